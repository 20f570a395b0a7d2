"""bf16 autocast training: it learns, stays exactly reproducible on the CPU, and clips with the fused optimiser."""

import pytest
import torch

import seqvision
from seqvision.config import TrainConfig
from seqvision.data.registry import augment_shift
from seqvision.models.fused import fused_kernels, python_loops
from seqvision.runs.folder import RunFolder
from seqvision.training.train import resolve_precision

BF16 = dict(model="cnn", dataset="digits", epochs=3, precision="bf16", clip_grad=1.0)


def last_weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(RunFolder(run_dir).checkpoint("last"), weights_only=True)["state_dict"]


@pytest.mark.slow
def test_bf16_trains_reproducibly_and_close_to_float32(tmp_path):
    runs = [seqvision.train(out=tmp_path / name, progress=False, report=False, **{**BF16, **change})
            for name, change in (("bf16", {}), ("bf16-again", {}), ("fp32", {"precision": "32"}))]
    bf16, again, fp32 = runs
    assert bf16.test_metrics["test_accuracy"] > 0.85, bf16.test_metrics
    first, second = last_weights(bf16.run_dir), last_weights(again.run_dir)
    assert all(torch.equal(first[name], second[name]) for name in first), "same seed, same weights"
    assert all(first[name].dtype == torch.float32 for name in first), "the weights stay float32"
    # bf16 rounds the activations, so the run differs from float32, but not by much.
    assert first.keys() == last_weights(fp32.run_dir).keys()
    assert any(not torch.equal(first[n], last_weights(fp32.run_dir)[n]) for n in first), "autocast was applied"
    assert abs(bf16.test_metrics["test_accuracy"] - fp32.test_metrics["test_accuracy"]) < 0.05


@pytest.mark.slow
def test_channels_last_trains_reproducibly_resumes_exactly_and_loads_anywhere(tmp_path):
    # No schedule: extending a run re-plans a cosine schedule, so 2 + 1 epochs would not equal 3.
    settings = {**BF16, "memory_format": "channels-last", "scheduler": "none"}
    whole = seqvision.train(out=tmp_path / "whole", progress=False, report=False, **settings)
    again = seqvision.train(out=tmp_path / "again", progress=False, report=False, **settings)
    seqvision.train(out=tmp_path / "resumed", progress=False, report=False, **{**settings, "epochs": 2})
    resumed = seqvision.train(resume=tmp_path / "resumed", progress=False, report=False, epochs=3)
    weights = last_weights(whole.run_dir)
    assert whole.test_metrics["test_accuracy"] > 0.85, whole.test_metrics
    assert any(tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last)
               and not tensor.is_contiguous() for tensor in weights.values()), "the conv weights were channels-last"
    for other in (again, resumed):
        other_weights = last_weights(other.run_dir)
        assert all(torch.equal(weights[name], other_weights[name]) for name in weights)
    # The test pass rebuilt the model in the default layout from the checkpoint: both layouts load it.
    assert resumed.test_metrics == whole.test_metrics


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"), [(True, False, "bf16"), (False, True, "bf16"),
                                                              (False, False, "32")])
def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert resolve_precision(TrainConfig(), "cpu") == expected
    assert resolve_precision(TrainConfig(precision="32"), "cpu") == "32"
    assert resolve_precision(TrainConfig(precision="bf16"), "cpu") == "bf16"


@pytest.mark.parametrize(("options", "expected"), [
    ({"model": "lstm"}, "bf16"), ({"model": "bilstm"}, "bf16"), ({"model": "cnn"}, "bf16"),
    ({"model": "cnn-lstm"}, "bf16"), ({"model": "renet"}, "bf16"),
    # No bf16 kernel on the CPU: nn.RNN's bf16 steps are slower; the explicit cell runs float32 loops, and so does
    # the GRU at a hidden size its bf16 products cannot take.
    ({"model": "rnn"}, "32"), ({"model": "gru", "hidden": 100}, "32"),
    ({"model": "lstm", "cell_activation": "sigmoid"}, "32"),
])
def test_auto_precision_keeps_float32_for_models_that_bf16_does_not_speed_up(monkeypatch, options, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision(TrainConfig(**options), "cpu") == expected
    assert resolve_precision(TrainConfig(**options, precision="bf16"), "cpu") == "bf16", "an explicit choice stands"


def test_auto_precision_gives_the_gru_bf16_where_its_loops_make_bf16_products(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    kernels = fused_kernels()
    products = kernels is not None and kernels.bf16_products_available(TrainConfig(model="gru").hidden or 128)
    assert resolve_precision(TrainConfig(model="gru"), "cpu") == ("bf16" if products else "32")
    with python_loops():
        assert resolve_precision(TrainConfig(model="gru"), "cpu") == "32", "nn.GRU's bf16 steps are the slow ones"


@pytest.mark.parametrize("model", ["lstm", "gru", "cnn"])
def test_auto_precision_on_a_gpu_is_float32_even_where_the_gpu_has_bf16(monkeypatch, model):
    # The CPU's flags do not count for a GPU run (CI has no GPU: the choice is what is exercised). On an H100 bf16
    # autocast made these models' steps longer (docs/benchmarks.md, "The suite on a GPU").
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision(TrainConfig(model=model), "gpu") == "32"
    assert resolve_precision(TrainConfig(model=model, precision="bf16"), "gpu") == "bf16", "an explicit choice stands"


def test_a_run_records_the_precision_and_shift_that_auto_and_the_dataset_chose(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    plain = seqvision.train(model="lstm", dataset="digits", epochs=1, out=tmp_path / "plain", progress=False,
                            report=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    native = seqvision.train(model="lstm", dataset="digits", epochs=1, out=tmp_path / "native", progress=False,
                             report=False)
    saved = {name: RunFolder(run.run_dir).load_config() for name, run in (("plain", plain), ("native", native))}
    assert (saved["plain"].precision, saved["native"].precision) == ("32", "bf16")
    # The 8x8 digits have no default shift (2 pixels is a quarter of their side); MNIST's is 2.
    assert saved["plain"].augment_shift == 0 and TrainConfig().augment_shift is None
    assert augment_shift(TrainConfig(dataset="mnist")) == 2
    assert augment_shift(TrainConfig(dataset="mnist", augment_shift=0)) == 0
    first, second = last_weights(plain.run_dir), last_weights(native.run_dir)
    assert any(not torch.equal(first[name], second[name]) for name in first), "auto chose bf16 autocast"
    # A resume repeats what the run recorded, whatever `auto` would choose on the machine that resumes it.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    seqvision.train(resume=tmp_path / "native", epochs=2, progress=False, report=False)
    assert RunFolder(native.run_dir).load_config().precision == "bf16"
