"""Serving trained models: predict on pictures, portable bundles, ONNX/TorchScript export, the HTTP app and page."""
