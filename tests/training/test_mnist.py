"""Training on a slice of the real MNIST files (runs when SEQVISION_DATA points at them; CI sets it)."""

import pytest

import seqvision


@pytest.mark.mnist
@pytest.mark.slow
def test_lstm_learns_a_slice_of_mnist(mnist_root, tmp_path):
    result = seqvision.train(model="lstm", dataset="mnist", data_dir=str(mnist_root), epochs=3,
                             train_limit=12000, test_limit=2000, out=tmp_path / "run", progress=False)
    assert result.test_metrics["test_samples"] == 2000
    assert result.test_metrics["test_accuracy"] >= 0.85
    assert seqvision.evaluate(result.run_dir) == result.test_metrics
