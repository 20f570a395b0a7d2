"""Export a trained model as one self-contained ONNX or TorchScript file that takes any batch size.

Both files take float32 images (batch, height, width), or (batch, height, width, 3) for a colour model, already
normalised as in training, and return logits
(batch, classes). The batch axis is the trap: a recurrent model's initial state is built from the batch size,
and a tracer that records that size as a number gives a file that refuses every other batch size. So:

- ONNX goes through `torch.export` with a symbolic batch dimension, which raises where code would freeze it
  (the non-strict capture cannot follow len(); dynamo's strict capture, tried next, can), and the written graph
  is checked to have a symbolic batch axis on its input and output;
- TorchScript is traced with check inputs of other batch sizes, so a frozen batch size fails the export;
- the models themselves read the batch size from tensor shapes (flatten, view(-1)), never with len(), which a
  tracer records as a constant.

Files are written under a temporary name and renamed, so a failed export leaves nothing behind.
`max_abs_difference` measures how far an exported file is from PyTorch on batches of 1, 7 and 256.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqvision.atomic import atomic_path
from seqvision.errors import InputShapeError
from seqvision.models.scan import check_image_batch
from seqvision.serving.bundle import LoadedModel, load_model_source, write_bundle

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
# Export with a batch size that is neither 1 nor a size the checks use, so no size can be mistaken for the traced one.
EXPORT_BATCH = 3
# TorchScript re-traces with these and compares graphs and outputs: a batch size frozen into the trace fails there.
TRACE_CHECK_BATCHES = (1, 5)
COMPARED_BATCHES = (1, 7, 256)
# torch's loggers that print exporter progress and irrelevant notes ("torchvision is not installed").
EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx.experimental")

# A callable that maps float32 images (B, H, W[, 3]) to logits (B, C): `OnnxEngine.logits`, `TorchScriptEngine.logits`.
Runner = Callable[[np.ndarray], np.ndarray]


def export_onnx(model: nn.Module, image_shape: tuple[int, ...], path: str | Path) -> None:
    """Write `model` as a self-contained ONNX file with input "images" (batch, H, W) and output "logits" (batch, C).

    Raises RuntimeError (and writes nothing) when the exported graph would accept only one batch size."""
    twin = _export_twin(model)
    example = (_example_images(image_shape, EXPORT_BATCH),)
    dynamic = ({0: torch.export.Dim(BATCH_AXIS)},)  # positional: whatever forward calls its argument
    with _quiet_exporter():
        try:
            program = torch.export.export(twin, example, dynamic_shapes=dynamic, strict=False)
        except torch._dynamo.exc.UserError:
            # Non-strict capture sees Python ints where the code converts sizes (len(), int()) and refuses to
            # freeze the batch; dynamo's strict capture traces through such conversions symbolically.
            program = torch.export.export(twin, example, dynamic_shapes=dynamic, strict=True)
        with atomic_path(path) as tmp:
            # Named dynamic_shapes here only rename the program's symbolic batch dimension to "batch".
            torch.onnx.export(program, example, tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: BATCH_AXIS},), external_data=False, verbose=False, dynamo=True)
            _check_onnx_batch_axis(tmp)


def export_torchscript(model: nn.Module, image_shape: tuple[int, ...], path: str | Path) -> None:
    """Write `model` as a TorchScript file (torch.jit.load) taking images (batch, H, W) of any batch size.

    The shape check of the eager model is Python and is traced away: feed the file images of the right size."""
    twin = _export_twin(model)
    example = (_example_images(image_shape, EXPORT_BATCH),)
    checks = [(_example_images(image_shape, size),) for size in TRACE_CHECK_BATCHES]
    with _quiet_exporter(), torch.no_grad():
        try:
            traced = torch.jit.trace(twin, example, check_inputs=checks, check_tolerance=1e-5)
        except torch.jit.TracingCheckError as error:
            sizes = ", ".join(map(str, (EXPORT_BATCH, *TRACE_CHECK_BATCHES)))
            raise RuntimeError(f"TorchScript cannot give this model a dynamic batch axis: traced with batches of "
                               f"{sizes}, it records different graphs or outputs, so its forward turns the batch size "
                               "into a constant (len(images), int(...)); the ONNX export may still work. "
                               f"torch.jit says: {str(error).strip().splitlines()[0]}") from error
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp))


class OnnxEngine:
    """An ONNX Runtime session on the CPU with a fixed number of threads.

    One intra-op thread by default, where ONNX Runtime would take one per core: a single picture runs fastest on
    one (an LSTM step is too small to split: 0.09 ms against 0.14 ms on two), and a server answering requests in
    parallel would otherwise oversubscribe the cores. Large batches do scale (256 images through the LSTM(128):
    10.6 ms on one thread, 5.7 ms on two), so bulk prediction passes `threads`."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}.")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle worker threads would otherwise spin, burning CPU between requests.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # errors only: its warnings about graph rewrites mean nothing to users
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        (model_input,) = self.session.get_inputs()
        self.input_name = model_input.name
        self.output_name = self.session.get_outputs()[0].name
        # ("batch", H, W): symbolic dimensions are strings, fixed ones ints.
        self.input_shape = tuple(model_input.shape)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.input_shape[1:])

    def logits(self, images: np.ndarray) -> np.ndarray:
        """float images (B, H, W) or (B, H, W, 3) -> float32 logits (B, C)."""
        from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

        images = _float32_images(images)
        fixed = [(size, actual) for size, actual in zip(self.input_shape, images.shape, strict=False)
                 if isinstance(size, int)]
        if images.ndim != len(self.input_shape) or any(size != actual for size, actual in fixed):
            raise self._shape_error(images.shape)
        try:
            (logits,) = self.session.run([self.output_name], {self.input_name: images})
        except InvalidArgument as error:
            # Fixed dimensions are checked above; a graph with further shape constraints reports them here.
            raise self._shape_error(images.shape, f" ONNX Runtime says: {error}") from error
        return logits

    def _shape_error(self, actual: tuple[int, ...], detail: str = "") -> InputShapeError:
        expected = tuple(self.input_shape)
        size = "x".join(map(str, expected[1:]))
        layout = "(batch, height, width, channels)" if len(expected) == 4 else "(batch, height, width)"
        return InputShapeError(f"expected a batch of images shaped {expected}, got {tuple(actual)}. The ONNX file "
                               f"{self.path} was exported for {size} images, fed as {layout}.{detail}")


class TorchScriptEngine:
    """A TorchScript file loaded on the CPU, with the same `logits` as `OnnxEngine` (the traced file has no shape
    check of its own, so it is done here)."""

    def __init__(self, path: str | Path, image_shape: tuple[int, ...]) -> None:
        self.path = Path(path)
        self.image_shape = tuple(image_shape)
        with warnings.catch_warnings():
            # TorchScript is deprecated in favour of torch.export, but it is the format this engine reads.
            warnings.simplefilter("ignore", DeprecationWarning)
            self.module = torch.jit.load(str(self.path), map_location="cpu").eval()

    @torch.inference_mode()
    def logits(self, images: np.ndarray) -> np.ndarray:
        """float images (B, H, W) or (B, H, W, 3) -> float32 logits (B, C)."""
        batch = torch.from_numpy(_float32_images(images))
        check_image_batch(batch, self.image_shape)
        return self.module(batch).numpy()


def max_abs_difference(model: nn.Module, runner: Runner, images: torch.Tensor,
                       batch_sizes: Sequence[int] = COMPARED_BATCHES) -> float:
    """The largest absolute difference between the logits of `model` (in eval mode) and of `runner` over batches
    of each size, made from `images` (N, H, W) or (N, H, W, 3) repeated as needed. A batch size the exported file
    cannot take raises instead of counting as a difference."""
    if images.dim() not in (3, 4) or len(images) == 0:
        raise ValueError(f"expected at least one image shaped (N, height, width[, 3]), got {tuple(images.shape)}.")
    images = images.detach().to("cpu", torch.float32)
    device = next(model.parameters(), images).device
    largest = 0.0
    with _evaluating(model), torch.inference_mode():
        for size in batch_sizes:
            batch = images.repeat(math.ceil(size / len(images)), *[1] * (images.dim() - 1))[:size].contiguous()
            expected = model(batch.to(device)).float().cpu().numpy()
            actual = np.asarray(runner(batch.numpy()))
            if actual.shape != expected.shape:
                raise RuntimeError(f"the exported model returned logits shaped {actual.shape} for a batch of {size}; "
                                   f"PyTorch returns {expected.shape}.")
            largest = max(largest, float(np.abs(actual.astype(np.float64) - expected).max()))
    return largest


def _export_twin(model: nn.Module) -> nn.Module:
    """A copy of `model` on the CPU in eval mode, ready to trace (the caller's model keeps its device and mode)."""
    twin = copy.deepcopy(model).cpu().eval()
    for parameter in twin.parameters():
        parameter.requires_grad_(False)
    return twin


def _float32_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.floating):
        # Integer pixels would reach the model unnormalised and give confident nonsense.
        raise TypeError(f"expected float images normalised as in training, got dtype {images.dtype}.")
    return np.ascontiguousarray(images, dtype=np.float32)


def _example_images(image_shape: tuple[int, ...], batch: int) -> torch.Tensor:
    # A private generator: exporting must not move the global random state a training run depends on.
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, *image_shape, generator=generator)


def _check_onnx_batch_axis(path: Path) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in (*graph.input, *graph.output):
        first = value.type.tensor_type.shape.dim[0]
        if not first.dim_param:
            raise RuntimeError(f"the ONNX export fixed the batch size of {value.name!r} to {first.dim_value}; "
                               "the model's forward turns the batch size into a constant.")


@contextlib.contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporters' warnings and progress notes (tracer caveats the export checks itself, deprecations,
    absent torchvision operators): they mean nothing to someone exporting a model. Errors still propagate."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


EXPORT_FORMATS = ("bundle", "onnx", "torchscript")
DEFAULT_NAMES = {"bundle": "bundle", "onnx": "model.onnx", "torchscript": "model.pt"}
CHECK_IMAGES = 256


def export(source: str | Path, fmt: str, *, out: str | Path | None = None,
           data_dir: str | Path | None = None) -> tuple[Path, float | None, str]:
    """`seqvision export`: write a run's (or a bundle's) model in `fmt`. For onnx and torchscript, also return the
    largest absolute difference from PyTorch over batches of 1, 7 and 256, and which images it was measured on."""
    from seqvision.errors import ConfigError

    if fmt not in EXPORT_FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of: {', '.join(EXPORT_FORMATS)}.")
    loaded = load_model_source(source)
    target = Path(out) if out is not None else Path(source) / "export" / DEFAULT_NAMES[fmt]
    if fmt == "bundle":
        return write_bundle(loaded, target), None, ""
    target.parent.mkdir(parents=True, exist_ok=True)
    images, where = _check_images(loaded, data_dir)
    if fmt == "onnx":
        export_onnx(loaded.model, loaded.image_shape, target)
        runner: Runner = OnnxEngine(target, threads=2).logits
    else:
        export_torchscript(loaded.model, loaded.image_shape, target)
        runner = TorchScriptEngine(target, loaded.image_shape).logits
    return target, max_abs_difference(loaded.model, runner, images), where


def _check_images(loaded: LoadedModel, data_dir: str | Path | None) -> tuple[torch.Tensor, str]:
    """Up to 256 test images of the model's dataset, normalised as in training; random images only when the
    dataset cannot be found (and the caller says so)."""
    from seqvision.data import load_dataset
    from seqvision.data.folder import with_run_split
    from seqvision.errors import DatasetError

    config, shape = loaded.config, loaded.image_shape
    try:
        splits = load_dataset(config.dataset, data_dir if data_dir is not None else config.data_dir,
                              with_run_split(config, Path(loaded.source)))
    except DatasetError as error:
        return _example_images(shape, CHECK_IMAGES), f"random images ({config.dataset} not found: {error})"
    # np.array also decodes a streamed folder's pictures (seqvision.data.streaming.FileImages)
    pixels = torch.from_numpy(np.array(splits.test_images[:CHECK_IMAGES]))
    return loaded.normalisation.apply(pixels), f"{len(pixels)} {config.dataset} test images"
