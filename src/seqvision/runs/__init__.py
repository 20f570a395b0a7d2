"""Run folders and checkpoints: writing, reading, and rebuilding a trained model, without Lightning."""

from seqvision.runs.checkpoint import load_run_model, read_checkpoint, rebuild_model
from seqvision.runs.folder import RunFolder

__all__ = ["RunFolder", "load_run_model", "read_checkpoint", "rebuild_model"]
