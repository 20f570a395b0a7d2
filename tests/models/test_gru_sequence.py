"""seqvision's GRU against the reference, torch.nn.GRU with the same weights: outputs, every gradient, and the
cases that must go through nn.GRU's own forward."""

import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import seqvision
from seqvision.config import TrainConfig
from seqvision.data import load_dataset
from seqvision.models import build_model
from seqvision.models.fused import fused_kernels, python_loops
from seqvision.models.gru_sequence import GRU, GRUSequence
from seqvision.runs.folder import RunFolder
from tests.models.fitting import losses_of_a_short_fit


def twins(features: int, hidden: int, seed: int = 0, **options) -> tuple[nn.GRU, GRU]:
    torch.manual_seed(seed)
    reference = nn.GRU(features, hidden, **options)
    gru = GRU(features, hidden, **options)
    gru.load_state_dict(reference.state_dict())
    return reference, gru


def backward_names(tensor: torch.Tensor) -> set[str]:
    """The names of every node in the autograd graph behind `tensor`."""
    names, pending = set(), [tensor.grad_fn]
    while pending:
        node = pending.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            pending.extend(next_node for next_node, _ in node.next_functions)
    return names


def took_hand_written_pass(outputs: torch.Tensor) -> bool:
    return "GRUSequenceBackward" in backward_names(outputs)


SHAPES = [  # (batch, steps, features, hidden, options)
    pytest.param(5, 11, 7, 16, {}, id="one-layer"),
    pytest.param(128, 28, 28, 128, {}, id="mnist-rows"),
    pytest.param(3, 1, 4, 6, {}, id="one-step"),
    pytest.param(4, 9, 7, 16, {"num_layers": 2}, id="two-layers"),
    pytest.param(4, 9, 7, 16, {"bidirectional": True}, id="bidirectional"),
    pytest.param(4, 9, 7, 16, {"num_layers": 2, "bidirectional": True}, id="two-layers-bidirectional"),
]


@pytest.mark.parametrize(("batch", "steps", "features", "hidden", "options"), SHAPES)
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "time-first"])
def test_outputs_and_every_gradient_match_nn_gru(batch, steps, features, hidden, options, batch_first):
    reference, gru = twins(features, hidden, batch_first=batch_first, **options)
    torch.manual_seed(1)
    shape = (batch, steps, features) if batch_first else (steps, batch, features)
    sequences = torch.randn(shape)
    inputs = {name: sequences.clone().requires_grad_() for name in ("reference", "gru")}
    expected, expected_final = reference(inputs["reference"])
    outputs, final = gru(inputs["gru"])
    assert took_hand_written_pass(outputs)
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(final, expected_final, atol=1e-5, rtol=0)
    # Gradients reach the outputs both through every step and through the final states.
    output_weights, final_weights = torch.randn(expected.shape), torch.randn(expected_final.shape)
    ((expected * output_weights).sum() + (expected_final * final_weights).sum()).backward()
    ((outputs * output_weights).sum() + (final * final_weights).sum()).backward()
    torch.testing.assert_close(inputs["gru"].grad, inputs["reference"].grad, atol=1e-5, rtol=1e-5)
    for (name, actual), (_, wanted) in zip(gru.named_parameters(), reference.named_parameters(), strict=True):
        torch.testing.assert_close(actual.grad, wanted.grad, atol=1e-4, rtol=1e-5, msg=name)


def test_hand_written_gradient_passes_gradcheck():
    torch.manual_seed(2)
    hidden, features = 3, 4
    shapes = [(5, 2, features), (3 * hidden, features), (3 * hidden,), (3 * hidden, hidden), (3 * hidden,)]
    arguments = tuple(torch.randn(shape, dtype=torch.float64).requires_grad_() for shape in shapes)
    assert torch.autograd.gradcheck(GRUSequence.apply, arguments)


def test_is_a_drop_in_nn_gru_with_the_same_state_dict():
    reference, gru = twins(28, 32, batch_first=True)
    assert isinstance(gru, nn.GRU)
    assert list(gru.state_dict()) == list(reference.state_dict())
    plain = nn.GRU(28, 32, batch_first=True)
    plain.load_state_dict(gru.state_dict())
    model = build_model(TrainConfig(model="gru"), (28, 28), 10)
    assert type(model.rnn) is GRU


def test_uncompiled_autocast_packed_given_state_and_uncompiled_inference_use_nn_grus_own_forward():
    reference, gru = twins(7, 16, batch_first=True)
    sequences = torch.randn(4, 6, 7)
    with torch.no_grad(), python_loops():  # compiled inference: tests/models/test_fused.py
        assert torch.equal(gru(sequences)[0], reference(sequences)[0])
    with torch.autocast("cpu", dtype=torch.bfloat16), python_loops():
        outputs = gru(sequences)[0]
        assert not took_hand_written_pass(outputs)
        assert torch.equal(outputs, reference(sequences)[0])
    packed = pack_padded_sequence(sequences, torch.tensor([6, 5, 3, 2]), batch_first=True)
    assert torch.equal(gru(packed)[0].data, reference(packed)[0].data)
    state = torch.randn(1, 4, 16)
    outputs = gru(sequences, state)[0]
    assert not took_hand_written_pass(outputs)
    assert torch.equal(outputs, reference(sequences, state)[0])


@pytest.mark.parametrize("options", [{}, {"num_layers": 2, "bidirectional": True}], ids=["one-layer", "two-by-two"])
def test_under_autocast_the_compiled_float32_loops_run_as_without_it(options):
    _, gru = twins(7, 16, batch_first=True, **options)
    sequences = torch.randn(4, 6, 7, requires_grad=True)
    passes = []
    for autocast in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            outputs = gru(sequences)[0]
            with torch.no_grad():
                inferred = gru(sequences)[0]
        assert outputs.dtype == inferred.dtype == torch.float32 and took_hand_written_pass(outputs)
        passes.append((outputs, inferred, *torch.autograd.grad(outputs.square().sum(), [sequences, *gru.parameters()])))
    for plain, autocast in zip(*passes, strict=True):
        assert torch.equal(plain, autocast)


def gru_sequence_pass(sequences: torch.Tensor, gru: GRU, bf16_products: bool) -> list[torch.Tensor]:
    """Outputs, then the gradients of the input (if it requires one) and of the four weights, of one GRUSequence
    direction."""
    weights = [gru.weight_ih_l0, gru.bias_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0]
    outputs = GRUSequence.apply(sequences, *weights, bf16_products)
    grad_outputs = torch.randn(outputs.shape, generator=torch.Generator().manual_seed(2))
    wanted = [sequences, *weights] if sequences.requires_grad else weights
    return [outputs.detach(), *torch.autograd.grad(outputs, wanted, grad_outputs)]


BF16_PRODUCTS = pytest.mark.skipif(not (fused_kernels() and fused_kernels().bf16_products_available(64)),
                                   reason="the compiled loops' bf16 products need AVX-512 BF16 or AMX and a compiler")


@BF16_PRODUCTS
@pytest.mark.parametrize("hidden", [64, 128])
@pytest.mark.parametrize("input_grad", [True, False], ids=["input-gradient", "no-input-gradient"])
def test_compiled_bf16_products_match_the_python_loops_with_bf16_operands(hidden, input_grad):
    # Three steps: two recurrent products each way, few enough that a float32 difference in the last bit rarely
    # moves the rounding of a state to bf16. Float32 products differ from these by about 1e-3, so 2e-5 tells them
    # apart. Without
    # the input's gradient (a model's first layer) the compiled backward keeps one step's gradients at a time.
    _, gru = twins(7, hidden)
    sequences = torch.randn(3, 9, 7, requires_grad=input_grad)
    compiled = gru_sequence_pass(sequences, gru, bf16_products=True)
    with python_loops():
        reference = gru_sequence_pass(sequences, gru, bf16_products=True)
    float32 = gru_sequence_pass(sequences, gru, bf16_products=False)
    names = ["outputs", *(["input"] if input_grad else []), "weight_ih", "bias_ih", "weight_hh", "bias_hh"]
    for name, ours, expected in zip(names, compiled, reference, strict=True):
        # A weight gradient sums products of operands rounded to bf16 from float32 values that the two loops round
        # differently in the last bits, which now and then moves one operand by a bf16 step (2**-8 of it); a wrong
        # operand or offset would be off by the size of the gradient itself.
        atol = 2**-8 * expected.abs().max().item() if name.startswith("weight") else 2e-5
        assert torch.allclose(ours, expected, rtol=0, atol=atol), (name, (ours - expected).abs().max())
    assert not torch.allclose(compiled[0], float32[0], rtol=0, atol=1e-4), "no different from float32 products"


@BF16_PRODUCTS
def test_under_bf16_autocast_a_gru_of_64_units_makes_its_recurrent_products_in_bf16():
    _, gru = twins(28, 64, batch_first=True)
    images = torch.randn(16, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = gru(images)[0]
        with torch.no_grad():
            inferred = gru(images)[0]
    assert outputs.dtype == torch.float32 and took_hand_written_pass(outputs)
    # Inference runs the training loop without saving its factors, compiled apart: the last bit may differ.
    assert torch.allclose(outputs.detach(), inferred, rtol=0, atol=1e-6)
    expected = GRUSequence.apply(images.transpose(0, 1), gru.weight_ih_l0, gru.bias_ih_l0, gru.weight_hh_l0,
                                 gru.bias_hh_l0, True).transpose(0, 1)
    assert torch.equal(outputs, expected)
    assert not torch.equal(outputs, gru(images)[0]), "without autocast: float32 products"


@pytest.fixture(scope="module")
def digits_batch():
    splits = load_dataset("digits")
    images = torch.from_numpy(splits.train_images[:256]).float() / 16.0
    return (images - images.mean()) / images.std(), torch.from_numpy(splits.train_labels[:256])


def trained_gru_model(images: torch.Tensor, labels: torch.Tensor, *, plain: bool = False
                      ) -> tuple[nn.Module, list[float]]:
    """The default `gru` model after a short fit; `plain` swaps its layer for an nn.GRU with the same weights."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(model="gru", dataset="digits"), (8, 8), 10)
    if plain:
        layer = nn.GRU(model.rnn.input_size, model.rnn.hidden_size, batch_first=True)
        layer.load_state_dict(model.rnn.state_dict())
        model.rnn = layer
    torch.manual_seed(1)  # the same dropout masks for both, whatever building the nn.GRU drew
    return model, losses_of_a_short_fit(model, images, labels)


def test_gru_model_learns_digits_as_with_nn_gru(digits_batch):
    images, labels = digits_batch
    model, losses = trained_gru_model(images, labels)
    assert took_hand_written_pass(model.rnn(model.scan(images))[0])
    assert losses[-1] < 0.6 * losses[0], f"loss went {losses[0]:.3f} -> {losses[-1]:.3f}"
    # Only float32 rounding differs from nn.GRU's training, so 25 steps of Adam stay on the same path.
    _, reference = trained_gru_model(images, labels, plain=True)
    assert losses == pytest.approx(reference, abs=1e-3)


def test_same_seed_gives_the_same_weights(digits_batch):
    first, _ = trained_gru_model(*digits_batch)
    second, _ = trained_gru_model(*digits_batch)
    for (name, weight), other in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(weight, other), name


@pytest.mark.slow
def test_trains_in_float32_and_under_bf16_autocast_reproducibly(tmp_path):
    # Under autocast the layer runs its compiled loops, in float32 but for the recurrent products (bf16 operands for
    # its 128 units where the CPU has them), and the classifier's head in bfloat16: --precision bf16 must still
    # learn, repeat exactly, and stay near float32.
    options = dict(model="gru", dataset="digits", epochs=4, progress=False, report=False)
    runs = {(precision, again): seqvision.train(out=tmp_path / f"{precision}-{again}", precision=precision, **options)
            for precision in ("bf16", "32") for again in (0, 1)}
    bf16, float32 = (runs[(precision, 0)].test_metrics["test_accuracy"] for precision in ("bf16", "32"))
    assert bf16 > 0.4, runs[("bf16", 0)].test_metrics
    assert abs(bf16 - float32) < 0.1
    for precision in ("bf16", "32"):
        first, second = (torch.load(RunFolder(runs[(precision, again)].run_dir).checkpoint("last"),
                                    weights_only=True)["state_dict"] for again in (0, 1))
        assert all(torch.equal(first[name], second[name]) for name in first), f"{precision}: same seed, same weights"


@BF16_PRODUCTS
@pytest.mark.parametrize("rows", [0, 1, 261])
def test_bf16_products_sum_in_float32_with_mkl_or_without(rows):
    # The two layouts the GRU's loops pass: a weight gradient, left transposed and right a column slice of a wider
    # buffer; and the input projection, right transposed, into a slice of a wider output.
    kernels = fused_kernels()
    left, right = torch.randn(300, 128).bfloat16()[:rows], torch.randn(300, 512).bfloat16()[:rows, 128:]
    inputs, weight = torch.randn(rows, 28).bfloat16(), torch.randn(384, 28).bfloat16()
    for allow_mkl in (True, False):
        gradient = torch.full((128, 384), float("nan"))
        kernels.product_bf16_f32(left.t(), right, gradient, allow_mkl)
        torch.testing.assert_close(gradient.double(), left.double().t() @ right.double(), rtol=1e-5, atol=1e-4)
        projection = torch.full((rows, 400), float("nan"))
        kernels.product_bf16_f32(inputs, weight.t(), projection[:, :384], allow_mkl)
        torch.testing.assert_close(projection[:, :384].double(), inputs.double() @ weight.double().t(), rtol=1e-5,
                                   atol=1e-4)
        assert projection[:, 384:].isnan().all(), "wrote outside its view"


MNIST_SIZED_BF16_PASSES = """
import torch
from seqvision.models.gru_sequence import GRU
torch.manual_seed(0)
gru = GRU(28, 128, batch_first=True)
images = torch.randn(128, 28, 28)
expected = gru(images)[0]
for _ in range(2):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = gru(images)[0]
    outputs.sum().backward()
print((outputs - expected).abs().max().item())
"""


@BF16_PRODUCTS
def test_bf16_passes_over_several_projection_chunks_run_in_a_process_of_their_own():
    # At MNIST's sizes the input projection takes two chunks, so MKL's product runs between two of brgemm's, which
    # once left the CPU's tiles misconfigured: a SIGILL, which would end the test run itself, hence the process.
    child = subprocess.run([sys.executable, "-c", MNIST_SIZED_BF16_PASSES], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, f"exit status {child.returncode}: {child.stderr[-2000:]}"
    assert float(child.stdout.strip().splitlines()[-1]) < 0.05, "bf16 products far from float32's outputs"
