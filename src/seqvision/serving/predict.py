"""Predict classes of the user's own pictures with a trained model: the one path behind `seqvision predict`, the
HTTP API and the drawing page.

    picture bytes -> seqvision.data.images.prepare (MNIST-style: greyscale, polarity, crop, fit, centre; or, for
                     colour models and folder datasets, the whole picture in RGB or greyscale, resized)
                  -> the run's normalisation -> the model (PyTorch, or ONNX Runtime) -> class probabilities
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqvision.errors import ConfigError, InputShapeError
from seqvision.models.fused import build_for
from seqvision.serving.bundle import LoadedModel, load_model_source

ENGINES = ("torch", "onnx")
# A server runs at most INFERENCE_WORKERS requests' model work at once, each on THREADS_PER_WORKER threads, so
# that together they use the cores without oversubscribing them.
INFERENCE_WORKERS = max(1, min(2, os.cpu_count() or 1))
THREADS_PER_WORKER = max(1, (os.cpu_count() or 1) // INFERENCE_WORKERS)


@dataclass
class Prediction:
    """One picture's answer: every class probability, and the classes ranked."""

    probabilities: list[float]
    ranked: list[tuple[str, float]]

    def as_dict(self, top_k: int) -> dict[str, Any]:
        return {"predicted": self.ranked[0][0], "probability": self.ranked[0][1],
                "top_k": [{"class": name, "probability": p} for name, p in self.ranked[:top_k]],
                "probabilities": self.probabilities}


class Predictor:
    """A loaded model behind one engine. `probabilities` takes uint8 images shaped like the training images."""

    def __init__(self, loaded: LoadedModel, engine: str = "torch") -> None:
        if engine not in ENGINES:
            raise ConfigError(f"unknown --engine {engine!r}; choose one of: {', '.join(ENGINES)}.")
        self.loaded, self.engine = loaded, engine
        self._onnx = self._export_onnx() if engine == "onnx" else None
        if engine == "torch":
            build_for(loaded.model)  # a first build's half minute now, not in the first request

    @classmethod
    def open(cls, source: str | os.PathLike[str], engine: str = "torch") -> Predictor:
        """A run folder or a bundle (seqvision.serving.bundle)."""
        return cls(load_model_source(source), engine)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.loaded.image_shape

    def prepare(self, data: bytes, preprocess: bool = True) -> np.ndarray:
        """A picture's bytes as this model's input pixels (seqvision.data.images.prepare), uint8 (H, W) or
        (H, W, 3)."""
        from seqvision.data.images import prepare

        return prepare(data, self.image_shape, preprocess=preprocess, box_fraction=self.loaded.box_fraction,
                       whole=self.loaded.whole)

    @property
    def reads_steps(self) -> bool:
        """Whether `step_probabilities` has an answer: LSTM models read step by step."""
        from seqvision.models.recurrent import reads_step_by_step

        return reads_step_by_step(self.loaded.model)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.loaded.classes

    def _export_onnx(self) -> Any:
        from seqvision.serving.export import OnnxEngine, export_onnx

        with tempfile.TemporaryDirectory(prefix="seqvision-onnx-") as folder:
            path = Path(folder) / "model.onnx"
            export_onnx(self.loaded.model, self.image_shape, path)
            return OnnxEngine(path, threads=THREADS_PER_WORKER)

    @torch.inference_mode()
    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (B, H, W) or (B, H, W, 3) -> class probabilities (B, C), float64 rows summing to 1."""
        if images.ndim != len(self.image_shape) + 1 or tuple(images.shape[1:]) != self.image_shape:
            raise InputShapeError(f"expected images shaped {('batch', *self.image_shape)}, got {tuple(images.shape)}.")
        inputs = self.loaded.normalisation.apply(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8)))
        if self._onnx is not None:
            logits = torch.from_numpy(self._onnx.logits(inputs.numpy()))
        else:
            logits = self.loaded.model(inputs)
        return torch.softmax(logits.double(), dim=1).numpy()

    def predict(self, images: np.ndarray) -> list[Prediction]:
        names = self.classes
        results = []
        for row in self.probabilities(images):
            order = np.argsort(-row, kind="stable")
            results.append(Prediction(row.tolist(), [(names[i], float(row[i])) for i in order]))
        return results

    @torch.inference_mode()
    def step_probabilities(self, image: np.ndarray) -> list[list[float]] | None:
        """For LSTM models read step by step: the class probabilities after each step (row) of one image, the
        curve the report draws; None for the other models."""
        model = self.loaded.model
        if not self.reads_steps:
            return None
        inputs = self.loaded.normalisation.apply(torch.from_numpy(np.ascontiguousarray(image[None], dtype=np.uint8)))
        return model.step_probabilities(model.trace(inputs))[0].double().tolist()


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
STDIN = "-"


@dataclass
class FileResult:
    """One input file's answer, or why it has none (not an image, blank: no ink found)."""

    name: str
    prediction: Prediction | None = None
    problem: str | None = None


def image_files(inputs: list[str]) -> list[str]:
    """Files as given, folders searched recursively for pictures (sorted), and "-" for standard input."""
    found: list[str] = []
    for item in inputs:
        path = Path(item)
        if item == STDIN or path.is_file():
            found.append(item)
        elif path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise ConfigError(f"{item} is neither a file nor a folder; give pictures, folders of them, or - for "
                              "standard input.")
    if not found:
        raise ConfigError(f"no pictures found in {', '.join(inputs)} (looked for {', '.join(IMAGE_SUFFIXES)}).")
    return found


def predict_files(predictor: Predictor, names: list[str], *, preprocess: bool = True, batch_size: int = 256,
                  progress: Any = None) -> list[FileResult]:
    """Read, prepare and classify each file, in batches; a file that cannot be read is reported, not fatal."""
    import sys

    from seqvision.errors import BlankImageError, SeqvisionError

    results: list[FileResult] = []
    for start in range(0, len(names), batch_size):
        chunk = names[start:start + batch_size]
        ready: list[tuple[FileResult, np.ndarray]] = []
        for name in chunk:
            result = FileResult(name)
            results.append(result)
            try:
                data = sys.stdin.buffer.read() if name == STDIN else Path(name).read_bytes()
                ready.append((result, predictor.prepare(data, preprocess)))
            except BlankImageError:
                result.problem = "blank: no ink found"
            except (SeqvisionError, OSError) as error:
                result.problem = str(error)
        if ready:
            for (result, _), prediction in zip(ready, predictor.predict(np.stack([a for _, a in ready])),
                                               strict=True):
                result.prediction = prediction
        if progress is not None:
            progress.update(len(chunk))
    return results


def render_results(results: list[FileResult], fmt: str, top_k: int) -> str:
    """The answers as `predict --format` shows them: an aligned table, JSON, or CSV."""
    if fmt == "json":
        import json

        return json.dumps([{"file": r.name, **(r.prediction.as_dict(top_k) if r.prediction else {"error": r.problem})}
                           for r in results], indent=2) + "\n"
    if fmt == "csv":
        from seqvision.tables import csv_text

        header = ["file", "predicted", "probability", *[f"top{i + 1}" for i in range(top_k)], "problem"]
        return csv_text(header, ([r.name, *_csv_cells(r, top_k)] for r in results))
    width = max(len(r.name) for r in results)
    lines = []
    for r in results:
        answer = ("  ".join(f"{name} {100 * p:5.1f}%" for name, p in r.prediction.ranked[:top_k])
                  if r.prediction else r.problem)
        lines.append(f"{r.name:<{width}}  {answer}\n")
    return "".join(lines)


def _csv_cells(result: FileResult, top_k: int) -> list[str]:
    if result.prediction is None:
        return ["", "", *[""] * top_k, result.problem or ""]
    ranked = result.prediction.ranked
    return [ranked[0][0], f"{ranked[0][1]:.6f}", *[f"{name}:{p:.6f}" for name, p in ranked[:top_k]], ""]
