"""ONNX and TorchScript export: every model family, any batch size, the same logits as PyTorch, and failures
that leave no file and name their cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from seqvision.config import TrainConfig
from seqvision.errors import InputShapeError
from seqvision.models import build_model
from seqvision.serving import export
from seqvision.serving.export import (
    OnnxEngine,
    TorchScriptEngine,
    export_onnx,
    export_torchscript,
    max_abs_difference,
)

NUM_CLASSES = 10
BATCH_SIZES = (1, 7, 256)
TOLERANCE = 1e-4
MNIST = (28, 28)
SLOW = pytest.mark.slow

# (TrainConfig options, image shape, id): small sizes where the family has them. The pixel scan reads an 8x8
# image (64 steps) to stay fast; on 28x28 it would be 784.
FAMILIES = [
    pytest.param({"model": "lstm", "hidden": 16}, MNIST, id="lstm"),
    pytest.param({"model": "stacked-lstm", "hidden": 16}, MNIST, id="stacked-lstm"),
    pytest.param({"model": "gru", "hidden": 16}, MNIST, id="gru"),
    pytest.param({"model": "rnn", "hidden": 16}, MNIST, id="rnn"),
    pytest.param({"model": "bilstm", "hidden": 16}, MNIST, id="bilstm"),
    pytest.param({"model": "cnn"}, MNIST, id="cnn"),
    pytest.param({"model": "cnn-lstm", "hidden": 16}, MNIST, id="cnn-lstm"),
    pytest.param({"model": "renet", "hidden": 8}, MNIST, id="renet", marks=SLOW),
    # seed 000's model: the explicit, gate-by-gate LSTM cell with a sigmoid activation
    pytest.param({"model": "lstm", "hidden": 16, "cell_activation": "sigmoid"}, MNIST, id="lstm-explicit-sigmoid",
                 marks=SLOW),
    pytest.param({"model": "lstm", "hidden": 16, "pooling": "attention"}, MNIST, id="lstm-attention"),
    pytest.param({"model": "lstm", "hidden": 16, "scan": "columns"}, MNIST, id="lstm-columns"),
    pytest.param({"model": "lstm", "hidden": 16, "scan": "pixels"}, (8, 8), id="lstm-pixels"),
    pytest.param({"model": "gru", "hidden": 8, "scan": "permuted-pixels"}, (8, 8), id="gru-permuted-pixels",
                 marks=SLOW),
    # colour images (H, W, 3), channels last
    pytest.param({"model": "lstm", "hidden": 16, "scan": "columns"}, (10, 8, 3), id="lstm-columns-colour"),
    pytest.param({"model": "cnn"}, (10, 8, 3), id="cnn-colour"),
    pytest.param({"model": "cnn-lstm", "hidden": 16}, (10, 8, 3), id="cnn-lstm-colour"),
    pytest.param({"model": "gru", "hidden": 8, "scan": "permuted-pixels"}, (6, 6, 3), id="gru-permuted-colour",
                 marks=SLOW),
    pytest.param({"model": "renet", "hidden": 8}, (10, 8, 3), id="renet-colour", marks=SLOW),
]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These models are tiny: a second intra-op thread buys nothing, and on a busy machine its barrier waits can
    make a run 10x slower. The previous setting is restored for the tests that follow."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(options: dict, image_shape: tuple[int, int]) -> nn.Module:
    torch.manual_seed(0)
    return build_model(TrainConfig(**options), image_shape, NUM_CLASSES).eval()


def random_images(batch: int, image_shape: tuple[int, int], seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, *image_shape, generator=torch.Generator().manual_seed(seed))


def assert_matches_eager(model: nn.Module, runner, image_shape: tuple[int, int]) -> None:
    for batch in BATCH_SIZES:
        images = random_images(batch, image_shape, seed=batch)
        with torch.no_grad():
            expected = model(images).numpy()
        actual = runner(images.numpy())
        assert actual.shape == (batch, NUM_CLASSES)
        assert actual.dtype == np.float32
        difference = float(np.abs(actual - expected).max())
        assert difference < TOLERANCE, f"batch {batch}: largest difference {difference:.2e}"


@pytest.fixture(scope="module")
def lstm_onnx(tmp_path_factory) -> tuple[nn.Module, Path]:
    """One small LSTM exported once, for the tests of the file and the engine."""
    model = build({"model": "lstm", "hidden": 16}, MNIST)
    path = tmp_path_factory.mktemp("lstm-onnx") / "model.onnx"
    export_onnx(model, MNIST, path)
    return model, path


@pytest.mark.parametrize(("options", "image_shape"), FAMILIES)
def test_onnx_export_takes_any_batch_size_and_matches_pytorch(options, image_shape, tmp_path):
    model = build(options, image_shape)
    path = tmp_path / "model.onnx"
    export_onnx(model, image_shape, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # self-contained, no temporary left
    assert_matches_eager(model, OnnxEngine(path).logits, image_shape)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize(("options", "image_shape"), FAMILIES)
def test_torchscript_export_takes_any_batch_size_and_matches_pytorch(options, image_shape, tmp_path):
    model = build(options, image_shape)
    path = tmp_path / "model.pt"
    export_torchscript(model, image_shape, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    loaded = torch.jit.load(str(path))

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(images)).numpy()

    assert_matches_eager(model, run, image_shape)


def test_onnx_graph_has_a_symbolic_batch_axis(lstm_onnx):
    _, path = lstm_onnx
    graph = onnx.load(str(path)).graph
    assert [value.name for value in graph.input] == ["images"]
    assert [value.name for value in graph.output] == ["logits"]

    def dims(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert dims(graph.input[0]) == ["batch", 28, 28]
    assert dims(graph.output[0]) == ["batch", NUM_CLASSES]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not any(init.external_data for init in graph.initializer)


@pytest.mark.parametrize("shape", [(5, 27, 28), (5, 28, 27), (28, 28), (1, 1, 28, 28)])
def test_onnx_engine_refuses_images_of_another_shape(lstm_onnx, shape):
    _, path = lstm_onnx
    with pytest.raises(InputShapeError) as caught:
        OnnxEngine(path).logits(np.zeros(shape, dtype=np.float32))
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "('batch', 28, 28)" in message
    assert str(shape) in message


def test_onnx_engine_refuses_integer_pixels(lstm_onnx):
    _, path = lstm_onnx
    with pytest.raises(TypeError, match="float images"):
        OnnxEngine(path).logits(np.zeros((2, 28, 28), dtype=np.uint8))


def test_onnx_engine_reports_its_input_and_takes_float64(lstm_onnx):
    model, path = lstm_onnx
    engine = OnnxEngine(path, threads=2)
    assert engine.input_shape == ("batch", 28, 28)
    assert engine.image_shape == (28, 28)
    assert engine.session.get_session_options().intra_op_num_threads == 2
    images = random_images(3, MNIST)
    with torch.no_grad():
        expected = model(images).numpy()
    assert np.abs(engine.logits(images.numpy().astype(np.float64)) - expected).max() < TOLERANCE
    with pytest.raises(ValueError, match="threads"):
        OnnxEngine(path, threads=0)


def test_max_abs_difference_tiles_images_to_each_batch_size(lstm_onnx):
    model, path = lstm_onnx
    engine = OnnxEngine(path)
    seen = []

    def runner(images: np.ndarray) -> np.ndarray:
        seen.append(images.shape[0])
        return engine.logits(images)

    difference = max_abs_difference(model, runner, random_images(5, MNIST))
    assert seen == [1, 7, 256]
    assert 0 <= difference < TOLERANCE

    def shifted(images: np.ndarray) -> np.ndarray:
        return engine.logits(images) + 0.5

    assert max_abs_difference(model, shifted, random_images(5, MNIST), batch_sizes=(2,)) == pytest.approx(0.5, abs=1e-4)


def test_max_abs_difference_refuses_an_exported_model_with_a_fixed_batch(lstm_onnx):
    model, path = lstm_onnx
    engine = OnnxEngine(path)

    def fixed_batch(images: np.ndarray) -> np.ndarray:
        return engine.logits(images[:3])

    with pytest.raises(RuntimeError, match="batch of 7"):
        max_abs_difference(model, fixed_batch, random_images(5, MNIST), batch_sizes=(3, 7))


def test_torchscript_engine_matches_and_checks_shapes(tmp_path):
    model = build({"model": "cnn"}, MNIST)
    path = tmp_path / "model.pt"
    export_torchscript(model, MNIST, path)
    engine = TorchScriptEngine(path, MNIST)
    assert max_abs_difference(model, engine.logits, random_images(4, MNIST)) < TOLERANCE
    with pytest.raises(InputShapeError, match=r"\(2, 27, 28\)"):
        engine.logits(np.zeros((2, 27, 28), dtype=np.float32))


class Broken(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this model cannot run")


@pytest.mark.parametrize("exporter", [export_onnx, export_torchscript], ids=["onnx", "torchscript"])
def test_a_failed_export_leaves_no_file(exporter, tmp_path):
    with pytest.raises(RuntimeError, match="cannot run"):
        exporter(Broken(), MNIST, tmp_path / "model.out")
    assert list(tmp_path.iterdir()) == []


def test_a_failure_while_writing_keeps_the_previous_file_and_no_temporary(lstm_onnx, tmp_path, monkeypatch):
    model, _ = lstm_onnx
    target = tmp_path / "model.onnx"
    target.write_bytes(b"previous export")

    def refuse(path) -> None:
        assert path.exists() and path != target  # written under a temporary name first
        raise RuntimeError("checked and refused")

    monkeypatch.setattr(export, "_check_onnx_batch_axis", refuse)
    with pytest.raises(RuntimeError, match="checked and refused"):
        export_onnx(model, MNIST, target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert target.read_bytes() == b"previous export"


class LenBatch(nn.Module):
    """Reads the batch size with len(), as tracers cannot follow: the trap for a dynamic batch axis."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(28 * 28, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.reshape(len(images), -1))


def test_onnx_export_keeps_the_batch_symbolic_where_the_code_uses_len(tmp_path):
    model = LenBatch().eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, MNIST, path)
    assert_matches_eager(model, OnnxEngine(path).logits, MNIST)


def test_torchscript_export_refuses_a_trace_that_freezes_the_batch(tmp_path):
    with pytest.raises(RuntimeError, match="batch"):
        export_torchscript(LenBatch().eval(), MNIST, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []


def test_export_leaves_the_model_and_random_state_alone(tmp_path):
    model = build({"model": "lstm", "hidden": 8, "scan": "pixels"}, (8, 8)).train()
    state = torch.get_rng_state()
    export_torchscript(model, (8, 8), tmp_path / "model.pt")
    export_onnx(model, (8, 8), tmp_path / "model.onnx")
    assert model.training
    assert type(model.scan).__name__ == "ImageScan"
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)


def test_export_prints_nothing(tmp_path, capfd, recwarn):
    model = build({"model": "lstm", "hidden": 8, "cell_activation": "sigmoid"}, (8, 8))
    export_onnx(model, (8, 8), tmp_path / "model.onnx")
    export_torchscript(model, (8, 8), tmp_path / "model.pt")
    export_onnx(LenBatch().eval(), MNIST, tmp_path / "strict.onnx")  # the strict capture's path
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [str(w.message) for w in recwarn] == []
