"""The compiled LSTM and GRU loops (models/fused_rnn.cpp) against the Python loops they replace, which stay the
reference (themselves checked against nn.LSTM, nn.GRU and finite differences in test_cells.py and
test_gru_sequence.py)."""

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqvision.models import fused
from seqvision.models.cells import ExplicitLSTM
from seqvision.models.fused import fused_kernels, python_loops
from seqvision.models.gru_sequence import GRU


def test_the_kernels_compile_on_this_machine():
    # CI's machines have a compiler: here a fallback to the Python loops would hide a broken build.
    assert fused_kernels() is not None


def outputs_and_gradients(layer: torch.nn.Module, sequences: torch.Tensor, compiled: bool
                          ) -> tuple[torch.Tensor, ...]:
    layer.zero_grad()
    inputs = sequences.clone().requires_grad_()
    with contextlib.nullcontext() if compiled else python_loops():
        outputs, finals = layer(inputs)
        finals = finals[1] if isinstance(finals, tuple) else finals  # the LSTM's cell state, the GRU's hidden
        torch.manual_seed(9)
        ((outputs * torch.randn(outputs.shape)).sum() + (finals * torch.randn(finals.shape)).sum()).backward()
    return outputs, finals, inputs.grad, *(parameter.grad for parameter in layer.parameters())


SHAPES = [  # (batch, steps, features, hidden): seed 000's, odd sizes that leave vector tails, one step, batch 1
    pytest.param(64, 28, 28, 128, id="seed-000"),
    pytest.param(5, 11, 7, 13, id="odd"),
    pytest.param(3, 1, 4, 6, id="one-step"),
    pytest.param(1, 6, 3, 17, id="batch-1"),
]


@pytest.mark.parametrize(("batch", "steps", "features", "hidden"), SHAPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_compiled_lstm_loops_match_the_python_loops(batch, steps, features, hidden, activation):
    torch.manual_seed(3)
    lstm = ExplicitLSTM(features, hidden, num_layers=2, activation=activation)
    sequences = torch.randn(batch, steps, features)
    compiled, reference = (outputs_and_gradients(lstm, sequences, flag) for flag in (True, False))
    for actual, expected in zip(compiled, reference, strict=True):
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-5)  # sums of B x T terms, in another order


@pytest.mark.parametrize(("batch", "steps", "features", "hidden"), SHAPES)
def test_compiled_gru_loops_match_the_python_loops(batch, steps, features, hidden):
    torch.manual_seed(4)
    gru = GRU(features, hidden, num_layers=2, bidirectional=True, batch_first=True)
    sequences = torch.randn(batch, steps, features)
    compiled, reference = (outputs_and_gradients(gru, sequences, flag) for flag in (True, False))
    for actual, expected in zip(compiled, reference, strict=True):
        torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-5)  # sums of B x T terms, in another order


def inference_both_ways(layer: torch.nn.Module, sequences: torch.Tensor, kernel: str, monkeypatch
                        ) -> tuple[object, object, int]:
    """The layer's inference with the compiled loops and with its fallback, and how often the compiled function
    `kernel` was called, so that a test knows the compiled path ran."""
    kernels, calls = fused_kernels(), []
    original = getattr(kernels, kernel)

    def counting(*args):
        calls.append(None)
        return original(*args)

    monkeypatch.setattr(kernels, kernel, counting)
    with torch.inference_mode():
        compiled = layer.eval()(sequences)
        with python_loops():
            fallback = layer(sequences)
    return compiled, fallback, len(calls)


@pytest.mark.parametrize(("batch", "steps", "features", "hidden"), SHAPES)
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_compiled_inference_matches_the_readable_cells(batch, steps, features, hidden, activation, monkeypatch):
    torch.manual_seed(6)
    lstm = ExplicitLSTM(features, hidden, num_layers=2, activation=activation)
    compiled, readable, calls = inference_both_ways(lstm, torch.randn(batch, steps, features), "lstm_inference",
                                                    monkeypatch)
    assert calls == 2, "one compiled call per layer, none under python_loops()"
    torch.testing.assert_close(compiled, readable, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("batch", "steps", "features", "hidden"), SHAPES)
def test_compiled_gru_inference_matches_nn_grus_own_forward(batch, steps, features, hidden, monkeypatch):
    torch.manual_seed(8)
    gru = GRU(features, hidden, num_layers=2, bidirectional=True, batch_first=True)
    compiled, reference, calls = inference_both_ways(gru, torch.randn(batch, steps, features), "gru_inference",
                                                     monkeypatch)
    assert calls == 4, "one compiled call per layer and direction, none under python_loops()"
    torch.testing.assert_close(compiled, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sigmoid", [True, False])
def test_splitting_a_step_across_threads_changes_no_result(sigmoid):
    # A step of 130 x 67 elements, not a whole number of vectors, is split across two threads. Zero recurrent
    # weights add exact zeros, so the elementwise loops alone decide the results, which must be the same bits as
    # on one thread.
    kernels, threads = fused_kernels(), torch.get_num_threads()
    torch.manual_seed(7)
    steps, hidden, batch = 5, 130, 67
    projected, recurrent = torch.randn(steps, 4 * hidden, batch) * 3, torch.zeros(4 * hidden, hidden)
    grad_outputs, grad_cell = torch.randn(steps, hidden, batch), torch.randn(hidden, batch)
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            gates = projected.clone()
            hiddens, factors, cell = kernels.lstm_forward(gates, recurrent, sigmoid)
            grad_gates, _ = kernels.lstm_backward(grad_outputs, grad_cell.clone(), recurrent, gates, hiddens, factors)
            results.append((gates, hiddens, factors, cell, grad_gates,
                            *kernels.lstm_inference(projected.clone(), recurrent, sigmoid)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*results, strict=True))


def test_compiled_loops_repeat_exactly():
    torch.manual_seed(5)
    lstm = ExplicitLSTM(28, 32, activation="sigmoid")
    sequences = torch.randn(16, 28, 28)
    first, second = (outputs_and_gradients(lstm, sequences, True) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.fixture
def new_build(tmp_path, monkeypatch):
    """The next fused_kernels() builds again, into an empty extensions folder, under a name of its own; the cached
    module is back after. (PyTorch numbers the builds of one name within a process: built under the real name, a
    broken source here made this process's next real build a new version, whose build file then made the next
    process compile the kernels again.)"""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.setattr(fused, "_machine_tag", lambda: "test")
    fused._compiled.cache_clear()
    yield
    fused._compiled.cache_clear()


def test_a_failed_compilation_warns_with_the_compilers_error_and_falls_back(new_build, tmp_path, monkeypatch):
    broken = tmp_path / "fused_rnn.cpp"
    broken.write_text("#include <torch/extension.h>\nint seqvision_test_function() { return undeclared_name; }\n")
    monkeypatch.setattr(fused, "SOURCE", broken)
    with pytest.warns(UserWarning, match=r"could not compile .*undeclared_name.*Python loops"):
        assert fused_kernels() is None


def test_a_missing_compiler_is_named_in_the_warning(new_build, tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.warns(UserWarning, match=r"compile .*no-such-compiler: not found.*Install a C\+\+ compiler"):
        assert fused_kernels() is None


def test_the_environment_switch_turns_the_kernels_off(new_build, monkeypatch):
    monkeypatch.setenv(fused.SWITCH, "0")
    assert fused_kernels() is None


def test_training_builds_the_kernels_first_only_for_models_that_use_them(monkeypatch):
    from seqvision.config import TrainConfig
    from seqvision.models import build_model, resolve_model_options

    built = []
    monkeypatch.setattr(fused, "fused_kernels", lambda: built.append(True))
    for options, uses in (({"model": "lstm"}, False), ({"model": "cnn"}, False), ({"model": "gru"}, True),
                          ({"model": "lstm", "cell_activation": "sigmoid"}, True)):
        built.clear()
        fused.build_for(build_model(resolve_model_options(TrainConfig(**options)), (28, 28), 10))
        assert built == ([True] if uses else []), options


def test_compiled_inference_of_an_empty_batch_is_empty_as_the_fallbacks_is(monkeypatch):
    for layer, kernel in ((ExplicitLSTM(5, 7, activation="sigmoid"), "lstm_inference"),
                          (GRU(5, 7, batch_first=True), "gru_inference")):
        compiled, fallback, calls = inference_both_ways(layer, torch.randn(0, 4, 5), kernel, monkeypatch)
        assert calls == 1 and compiled[0].shape == fallback[0].shape == (0, 4, 7), kernel


def test_a_lock_left_by_a_killed_build_does_not_hang_the_next_load():
    # PyTorch's own lock file, as a build killed with SIGTERM or kill -9 leaves it: the next load used to wait on
    # it forever. The library is already built, so a load takes a few seconds.
    from torch.utils import cpp_extension

    assert fused_kernels() is not None
    name = f"seqvision_fused_rnn_{fused._machine_tag()}"
    stale = Path(cpp_extension._get_build_directory(name, verbose=False)) / "lock"
    stale.touch()
    try:
        loaded = subprocess.run([sys.executable, "-c", "from seqvision.models.fused import fused_kernels\n"
                                 "assert fused_kernels() is not None"], timeout=120, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        pytest.fail("the load waited on the stale lock")
    finally:
        stale.unlink(missing_ok=True)
    assert loaded.returncode == 0, loaded.stderr
