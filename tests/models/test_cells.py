"""The explicit LSTM against the reference: torch.nn.LSTM with the same weights."""

import numpy as np
import pytest
import torch
from torch import nn

import seqvision
from seqvision.config import TrainConfig
from seqvision.errors import ConfigError
from seqvision.models import build_model
from seqvision.models.cells import ExplicitLSTM, LSTMCell, LSTMSequence
from seqvision.models.fused import python_loops
from seqvision.runs.folder import RunFolder


def twins(layers: int, seed: int = 0) -> tuple[nn.LSTM, ExplicitLSTM]:
    torch.manual_seed(seed)
    fused = nn.LSTM(7, 16, num_layers=layers, batch_first=True).double()
    return fused, ExplicitLSTM.like(fused).double()


@pytest.mark.parametrize("layers", [1, 2])
def test_explicit_lstm_matches_nn_lstm_forward(layers):
    fused, explicit = twins(layers)
    sequences = torch.randn(5, 11, 7, dtype=torch.float64)
    expected, (expected_h, expected_c) = fused(sequences)
    outputs, (h, c) = explicit(sequences)
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(h, expected_h, atol=1e-5, rtol=0)
    torch.testing.assert_close(c, expected_c, atol=1e-5, rtol=0)


@pytest.mark.parametrize("layers", [1, 2])
def test_explicit_lstm_matches_nn_lstm_gradients(layers):
    fused, explicit = twins(layers, seed=1)
    sequences = torch.randn(4, 9, 7, dtype=torch.float64)
    weights = torch.randn(4, 9, 16, dtype=torch.float64)
    fused_input = sequences.clone().requires_grad_()
    explicit_input = sequences.clone().requires_grad_()
    (fused(fused_input)[0] * weights).sum().backward()
    (explicit(explicit_input)[0] * weights).sum().backward()
    torch.testing.assert_close(explicit_input.grad, fused_input.grad, atol=1e-5, rtol=0)
    for layer in range(layers):
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            expected = getattr(fused, f"{name}_l{layer}").grad
            actual = getattr(explicit.cells[layer], name).grad
            torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0, msg=f"{name} of layer {layer}")


def test_float32_cell_matches_within_1e_5():
    torch.manual_seed(2)
    fused = nn.LSTM(28, 128, batch_first=True)
    explicit = ExplicitLSTM.like(fused)
    images = torch.rand(8, 28, 28)
    torch.testing.assert_close(explicit(images)[0], fused(images)[0], atol=1e-5, rtol=0)


def test_cell_has_nn_lstmcell_parameter_layout():
    torch.manual_seed(3)
    reference = nn.LSTMCell(6, 10)
    cell = LSTMCell(6, 10)
    cell.load_state_dict(reference.state_dict())
    inputs, h, c = torch.randn(3, 6), torch.randn(3, 10), torch.randn(3, 10)
    expected_h, expected_c = reference(inputs, (h, c))
    new_h, new_c, _ = cell(inputs @ cell.weight_ih.T + cell.bias_ih, (h, c))
    torch.testing.assert_close(new_h, expected_h, atol=1e-6, rtol=0)
    torch.testing.assert_close(new_c, expected_c, atol=1e-6, rtol=0)


def numpy_lstm(weights: dict[str, np.ndarray], sequence: np.ndarray, squash) -> tuple[np.ndarray, np.ndarray]:
    """A reference LSTM in numpy, straight from the equations (gate order i, f, g, o)."""
    hidden_size = weights["weight_hh"].shape[1]
    h, c = np.zeros(hidden_size), np.zeros(hidden_size)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for x in sequence:
        z = weights["weight_ih"] @ x + weights["bias_ih"] + weights["weight_hh"] @ h + weights["bias_hh"]
        i, f, g, o = np.split(z, 4)
        c = sigmoid(f) * c + sigmoid(i) * squash(g)
        h = sigmoid(o) * squash(c)
    return h, c


@pytest.mark.parametrize(("activation", "squash"), [("tanh", np.tanh), ("sigmoid", lambda x: 1 / (1 + np.exp(-x)))])
def test_explicit_lstm_follows_the_equations(activation, squash):
    torch.manual_seed(4)
    lstm = ExplicitLSTM(5, 8, activation=activation).double()
    sequence = torch.randn(1, 6, 5, dtype=torch.float64)
    _, (h, c) = lstm(sequence)
    weights = {name: value.detach().numpy() for name, value in lstm.cells[0].named_parameters()}
    expected_h, expected_c = numpy_lstm(weights, sequence[0].numpy(), squash)
    np.testing.assert_allclose(h[0, 0].detach().numpy(), expected_h, atol=1e-12)
    np.testing.assert_allclose(c[0, 0].detach().numpy(), expected_c, atol=1e-12)


def test_trace_returns_every_gate_and_state():
    fused, explicit = twins(2)
    sequences = torch.randn(3, 10, 7, dtype=torch.float64)
    trace = explicit.trace(sequences)
    for name in ("input_gate", "forget_gate", "candidate", "output_gate", "cell", "hidden"):
        assert getattr(trace, name).shape == (3, 10, 16), name
    for gate in (trace.input_gate, trace.forget_gate, trace.output_gate):
        assert gate.min() >= 0 and gate.max() <= 1
    # The recorded states obey the cell equations and equal the fused LSTM's outputs.
    previous = torch.cat([torch.zeros_like(trace.cell[:, :1]), trace.cell[:, :-1]], dim=1)
    torch.testing.assert_close(trace.cell, trace.forget_gate * previous + trace.input_gate * trace.candidate)
    torch.testing.assert_close(trace.hidden, trace.output_gate * torch.tanh(trace.cell))
    torch.testing.assert_close(trace.hidden, fused(sequences)[0], atol=1e-5, rtol=0)


def test_unknown_activation_and_bidirectional_twin_are_refused():
    with pytest.raises(ConfigError, match="unknown --cell-activation 'relu'"):
        LSTMCell(3, 4, activation="relu")
    with pytest.raises(ConfigError, match="unidirectional"):
        ExplicitLSTM.like(nn.LSTM(3, 4, batch_first=True, bidirectional=True))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_lstm_classifier_traces_its_own_weights(activation):
    torch.manual_seed(5)
    model = build_model(TrainConfig(model="lstm", hidden=12, cell_activation=activation), (8, 8), 10).eval()
    images = torch.rand(2, 8, 8)
    trace = model.trace(images)
    assert trace.forget_gate.shape == (2, 8, 12)
    torch.testing.assert_close(model.head(trace.hidden[:, -1]), model(images), atol=1e-5, rtol=0)


def test_trace_is_refused_for_models_without_an_lstm_cell():
    with pytest.raises(ConfigError, match="unidirectional LSTMs"):
        build_model(TrainConfig(model="gru"), (8, 8), 10).trace(torch.rand(1, 8, 8))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_hand_written_backward_passes_gradcheck(activation):
    # The training path's backward against finite differences, with gradients flowing into both the outputs
    # at every step and the final cell state.
    torch.manual_seed(5)
    inputs = torch.randn(3, 5, 2, dtype=torch.float64, requires_grad=True)
    weight_ih, bias = torch.randn(4 * 4, 2, dtype=torch.float64), torch.randn(4 * 4, dtype=torch.float64)
    weight_hh = 0.5 * torch.randn(4 * 4, 4, dtype=torch.float64)
    parameters = tuple(p.requires_grad_() for p in (weight_ih, bias, weight_hh))

    def layer(*args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return LSTMSequence.apply(*args, activation, torch.float64)

    assert torch.autograd.gradcheck(layer, (inputs, *parameters))


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_training_path_matches_the_readable_cells(activation):
    torch.manual_seed(6)
    lstm = ExplicitLSTM(5, 8, num_layers=2, activation=activation).double()
    sequences = torch.randn(4, 9, 5, dtype=torch.float64)
    training_outputs, training_finals = lstm(sequences)
    torch.testing.assert_close(training_outputs, lstm.trace(sequences).hidden, atol=1e-12, rtol=0)
    with torch.no_grad():  # inference takes the readable cells
        inference_outputs, inference_finals = lstm(sequences)
    torch.testing.assert_close(inference_outputs, training_outputs, atol=1e-12, rtol=0)
    for inference, training in zip(inference_finals, training_finals, strict=True):
        torch.testing.assert_close(inference, training, atol=1e-12, rtol=0)


def outputs_and_gradients(lstm: ExplicitLSTM, sequences: torch.Tensor, weights: torch.Tensor, bf16: bool
                          ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    lstm.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        outputs, (_, cell) = lstm(sequences)
        loss = (outputs.float() * weights).sum() + cell.float().sum()
    loss.backward()
    return outputs, cell, {name: parameter.grad for name, parameter in lstm.named_parameters()}


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
def test_python_loops_under_bf16_autocast_run_the_products_in_bf16_and_stay_close_to_float32(activation):
    # Where the loops are compiled, autocast leaves the layer in float32 (test_under_autocast_the_compiled_...).
    torch.manual_seed(7)
    lstm = ExplicitLSTM(28, 64, num_layers=2, activation=activation)
    sequences, weights = torch.rand(16, 28, 28), torch.randn(16, 28, 64)
    expected, expected_cell, expected_grads = outputs_and_gradients(lstm, sequences, weights, bf16=False)
    with python_loops():
        outputs, cell, grads = outputs_and_gradients(lstm, sequences, weights, bf16=True)
    assert outputs.dtype == torch.bfloat16, "the hidden states come out of bf16 products, as nn.LSTM's do"
    assert cell.dtype == torch.float32, "the cell state is kept in float32"
    assert not torch.equal(outputs.float(), expected), "autocast was applied"
    # bf16 keeps 8 bits of mantissa (2^-8 = 4e-3 relative per rounding); the errors measured were 1e-3 to 2e-3
    torch.testing.assert_close(outputs.float(), expected, atol=5e-3, rtol=0)
    torch.testing.assert_close(cell, expected_cell, atol=5e-3, rtol=0)
    for name, grad in grads.items():
        assert grad.dtype == torch.float32, f"{name}'s gradient is in the parameter's dtype"
        scale = expected_grads[name].abs().max()
        torch.testing.assert_close(grad / scale, expected_grads[name] / scale, atol=1e-2, rtol=0, msg=name)


def test_bf16_explicit_lstm_is_as_close_to_float32_as_nn_lstm_under_autocast():
    torch.manual_seed(8)
    fused = nn.LSTM(28, 128, batch_first=True)
    explicit = ExplicitLSTM.like(fused)
    images = torch.rand(32, 28, 28)
    expected = fused(images)[0]
    # The Python loops, whose products run in bfloat16: with the compiled loops autocast leaves the layer in float32.
    with torch.autocast("cpu", dtype=torch.bfloat16), python_loops():
        fused_error = (fused(images)[0].float() - expected).abs().max()
        explicit_error = (explicit(images)[0].float() - expected).abs().max()
    # The gate pre-activations and the cell state stay float32, so only the products' inputs are rounded.
    assert explicit_error <= 1.5 * fused_error, (explicit_error, fused_error)


@pytest.mark.parametrize("layers", [1, 2])
def test_under_autocast_the_compiled_float32_loops_run_as_without_it(layers):
    torch.manual_seed(9)
    explicit = ExplicitLSTM(7, 16, layers, 0.0, activation="sigmoid")
    sequences = torch.randn(4, 6, 7, requires_grad=True)
    passes = []
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs, (final_h, final_c) = explicit(sequences)
            with torch.no_grad():
                inferred = explicit(sequences)[0]
        assert outputs.dtype == inferred.dtype == torch.float32
        gradients = torch.autograd.grad(outputs.square().sum(), [sequences, *explicit.parameters()])
        passes.append((outputs, final_h, final_c, inferred, *gradients))
    for plain, autocast in zip(*passes, strict=True):
        assert torch.equal(plain, autocast)


@pytest.mark.slow
def test_seed_000_cell_trains_under_bf16_and_repeats_exactly(tmp_path):
    options = dict(model="lstm", dataset="digits", cell_activation="sigmoid", precision="bf16", epochs=5, lr=1e-2,
                   hidden=64, batch_size=32, progress=False, report=False)
    runs = [seqvision.train(out=tmp_path / name, **options) for name in ("first", "again")]
    assert runs[0].test_metrics["test_accuracy"] > 0.6, runs[0].test_metrics  # 10 classes: chance is 0.1
    first, again = (torch.load(RunFolder(run.run_dir).checkpoint("last"), weights_only=True)["state_dict"]
                    for run in runs)
    assert all(first[name].dtype == torch.float32 and torch.equal(first[name], again[name]) for name in first)
