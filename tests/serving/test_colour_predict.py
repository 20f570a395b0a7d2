"""A colour model of a folder dataset behind predict, the bundle, the ONNX export and a real server: pictures are
taken whole, in RGB, resized as the folder's images were; pixel arrays are (H, W, 3)."""

import io

import httpx
import numpy as np
import pytest
from PIL import Image

import seqvision
from seqvision.data.images import prepare
from seqvision.errors import InputShapeError
from seqvision.serving.bundle import WHOLE_PICTURE, read_bundle
from seqvision.serving.export import export
from seqvision.serving.predict import Predictor, predict_files
from tests.folders import CLASSES, draw_picture, write_picture_folder

from .conftest import RunningServer

SHAPE = (12, 12, 3)


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("colour")
    pictures = write_picture_folder(root / "pictures")
    out = root / "run"
    seqvision.train(model="cnn", dataset=f"folder:{pictures}", image_size=12, colour="rgb", epochs=3, out=out,
                    batch_size=8, progress=False, report=False)
    return out, pictures


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_picture_is_converted_to_rgb_and_resized_whole(colour_run):
    predictor = Predictor.open(colour_run[0])
    assert predictor.image_shape == SHAPE and predictor.classes == tuple(sorted(CLASSES))
    picture = draw_picture("bar", (30, 18), np.random.default_rng(0))
    pixels = predictor.prepare(png(picture))
    assert pixels.shape == SHAPE and pixels.dtype == np.uint8
    # no ink search or centring: the resized picture itself, colours kept
    assert np.array_equal(pixels, np.asarray(picture.resize((12, 12), Image.Resampling.BILINEAR)))
    assert np.array_equal(predictor.prepare(png(picture.convert("RGBA"))), pixels)
    with pytest.raises(InputShapeError, match=r"expected images shaped \('batch', 12, 12, 3\), got \(1, 12, 12\)"):
        predictor.probabilities(np.zeros((1, 12, 12), dtype=np.uint8))


def test_predict_reads_the_folders_pictures_as_training_did(colour_run):
    run, pictures = colour_run
    predictor = Predictor.open(run)
    files = sorted(str(path) for path in pictures.rglob("*.*"))
    answers = predict_files(predictor, files)
    right = sum(answer.prediction.ranked[0][0] == answer.name.split("/")[-2] for answer in answers)
    assert right >= 0.8 * len(files), f"{right} of {len(files)} pictures of the training folder read right"


def test_the_bundle_records_the_whole_picture_preparation_and_answers_as_its_run(colour_run, tmp_path):
    run, pictures = colour_run
    written, _, _ = export(run, "bundle", out=tmp_path / "bundle")
    bundle = read_bundle(written)
    assert bundle.preprocessing == {"fit": WHOLE_PICTURE, "colour": "rgb", "box_fraction": 1.0}
    data = (pictures / "disc" / "000.png").read_bytes()
    images = np.stack([prepare(data, SHAPE, whole=True)])
    assert np.array_equal(Predictor(bundle).probabilities(images), Predictor.open(run).probabilities(images))


@pytest.mark.slow
def test_the_onnx_export_of_a_colour_model_matches_pytorch(colour_run, tmp_path):
    written, difference, measured_on = export(colour_run[0], "onnx", out=tmp_path / "model.onnx")
    assert written.is_file() and difference < 1e-4
    assert measured_on.endswith(f"folder:{colour_run[1]} test images")


def test_the_server_takes_colour_pixels_and_pictures(colour_run):
    from seqvision.serving.app import create_app

    run, pictures = colour_run
    predictor = Predictor.open(run)
    with RunningServer(create_app(predictor)) as server:
        model = httpx.get(f"{server.url}/model").json()
        assert model["image_shape"] == list(SHAPE) and model["preprocessing"]["colour"] == "rgb"
        picture = (pictures / "cross" / "001.png").read_bytes()
        uploaded = httpx.post(f"{server.url}/predict", files={"image": ("cross.png", picture, "image/png")}).json()
        pixels = predictor.prepare(picture)
        one = httpx.post(f"{server.url}/predict", json={"pixels": pixels.tolist()}).json()
        assert one["probabilities"] == pytest.approx(uploaded["probabilities"])
        batch = httpx.post(f"{server.url}/predict/batch", json={"pixels": [pixels.tolist()] * 2}).json()
        assert len(batch["predictions"]) == 2
        grey = httpx.post(f"{server.url}/predict", json={"pixels": pixels[..., 0].tolist()})
        assert grey.status_code == 422 and "(12, 12, 3)" in grey.json()["error"]
