import pytest
import torch

from seqvision.config import TrainConfig
from seqvision.errors import ConfigError, InputShapeError
from seqvision.models import build_model, model_names
from seqvision.models.recurrent import LSTMClassifier
from seqvision.models.summary import model_summary


def lstm_parameter_count(features: int, hidden: int, classes: int) -> int:
    # torch.nn.LSTM: four gates, each with input weights, recurrent weights and two bias vectors
    return 4 * (hidden * features + hidden * hidden + 2 * hidden) + hidden * classes + classes


@pytest.mark.parametrize(("image_shape", "hidden"), [((28, 28), 128), ((8, 8), 32)])
def test_lstm_output_shape_and_parameter_count(image_shape, hidden):
    model = LSTMClassifier(image_shape, 10, hidden=hidden)
    logits = model(torch.rand(5, *image_shape))
    assert logits.shape == (5, 10)
    assert sum(p.numel() for p in model.parameters()) == lstm_parameter_count(image_shape[1], hidden, 10)


def test_seed_000_lstm_has_82186_parameters():
    # Keras counts 80,384 + 1,290 for the same layers: PyTorch keeps a second bias per gate.
    model = build_model(TrainConfig(model="lstm"), (28, 28), 10)
    assert sum(p.numel() for p in model.parameters()) == 82_186


def test_registry_lists_lstm():
    assert "lstm" in model_names()


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"available models: .*lstm"):
        build_model(TrainConfig(model="transformer"), (28, 28), 10)


def test_column_scan_reads_the_transposed_image():
    torch.manual_seed(0)
    by_rows = LSTMClassifier((28, 28), 10, scan="rows").eval()
    by_columns = LSTMClassifier((28, 28), 10, scan="columns").eval()
    by_columns.load_state_dict(by_rows.state_dict())
    images = torch.rand(3, 28, 28)
    torch.testing.assert_close(by_columns(images), by_rows(images.transpose(1, 2)))


@pytest.mark.parametrize("batch_shape", [(28, 4, 28), (4, 8, 8), (4, 1, 28, 28), (4, 784)])
def test_wrong_input_layout_fails_loudly(batch_shape):
    model = LSTMClassifier((28, 28), 10)
    with pytest.raises(InputShapeError, match=r"expected a batch of images shaped \('batch', 28, 28\)"):
        model(torch.rand(*batch_shape))


def test_summary_matches_golden(golden):
    model = build_model(TrainConfig(model="lstm"), (28, 28), 10)
    golden("lstm_mnist_summary.txt", model_summary(model, (28, 28)))
