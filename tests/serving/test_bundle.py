"""The portable bundle: safetensors + JSON, the same answers as the run it came from, refusals by name."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from seqvision.data import load_dataset
from seqvision.errors import BundleError
from seqvision.serving.bundle import DESCRIPTION_FILE, WEIGHTS_FILE, load_model_source, read_bundle, write_bundle


@pytest.fixture
def bundle(digits_run, tmp_path):
    return write_bundle(load_model_source(digits_run), tmp_path / "bundle")


def test_a_bundle_answers_exactly_as_its_run(digits_run, bundle):
    images = torch.from_numpy(load_dataset("digits").test_images[:50])
    from_run, from_bundle = load_model_source(digits_run), read_bundle(bundle)
    with torch.inference_mode():
        expected = from_run.model(from_run.normalisation.apply(images.clone()))
        got = from_bundle.model(from_bundle.normalisation.apply(images.clone()))
    assert torch.equal(expected, got)
    assert sorted(p.name for p in bundle.iterdir()) == [DESCRIPTION_FILE, WEIGHTS_FILE], "no pickle anywhere"
    info = json.loads((bundle / DESCRIPTION_FILE).read_text())
    assert info["format"] == 1 and info["model"] == "lstm" and info["config"]["hidden"] == 32
    assert info["image_shape"] == [8, 8] and info["classes"] == [str(i) for i in range(10)]
    assert set(info["normalisation"]) == {"mean", "std"} and info["preprocessing"]["ink"] == "light-on-dark"
    assert info["test_metrics"]["test_accuracy"] == from_run.test_metrics["test_accuracy"]


def test_a_bundle_of_a_newer_format_is_refused(bundle):
    info = json.loads((bundle / DESCRIPTION_FILE).read_text())
    (bundle / DESCRIPTION_FILE).write_text(json.dumps({**info, "format": 7}))
    with pytest.raises(BundleError, match=r"format 7.*reads format 1"):
        read_bundle(bundle)


def test_missing_and_extra_tensors_are_named(bundle):
    tensors = load_file(str(bundle / WEIGHTS_FILE))
    missing = dict(tensors)
    del missing["head.bias"]
    save_file(missing, str(bundle / WEIGHTS_FILE))
    with pytest.raises(BundleError, match=r"missing tensors \['head.bias'\], unexpected tensors none"):
        read_bundle(bundle)
    save_file({**tensors, "spare.weight": torch.zeros(3)}, str(bundle / WEIGHTS_FILE))
    with pytest.raises(BundleError, match=r"missing tensors none, unexpected tensors \['spare.weight'\]"):
        read_bundle(bundle)


def test_damaged_weights_and_foreign_folders_are_refused(bundle, tmp_path):
    (bundle / WEIGHTS_FILE).write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(BundleError, match="cannot read"):
        read_bundle(bundle)
    with pytest.raises(BundleError, match="neither a model bundle"):
        load_model_source(tmp_path)
