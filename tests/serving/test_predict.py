"""seqvision.serving.predict.Predictor: what opening one prepares."""

import seqvision
from seqvision.models import fused
from seqvision.serving.predict import Predictor


def test_opening_a_predictor_builds_the_compiled_loops_its_model_runs(tmp_path, digits_run, monkeypatch):
    # Built when the predictor opens (a server's start), so that no request waits the first build's half minute.
    gru_run = tmp_path / "gru"
    seqvision.train(model="gru", dataset="digits", epochs=1, hidden=8, train_limit=200, out=gru_run, progress=False,
                    report=False)
    built = []
    monkeypatch.setattr(fused, "fused_kernels", lambda: built.append(True))
    Predictor.open(gru_run)
    assert built == [True]
    built.clear()
    Predictor.open(digits_run)  # nn.LSTM: nothing to build
    Predictor.open(gru_run, engine="onnx")
    assert built == []
