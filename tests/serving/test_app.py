"""The HTTP API on a real uvicorn server: answers, and a 4xx with a JSON reason for every kind of bad input, after
which the server still answers."""

import base64
import io
import json
import struct
import zlib

import httpx
import numpy as np
import pytest
from PIL import Image

from seqvision.data import load_dataset


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def test_digits():
    splits = load_dataset("digits")
    return splits.test_images[:16], splits.test_labels[:16]


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge picture: a decompression bomb's shape, without the memory."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    rows = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_health_and_model(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    model = httpx.get(f"{server.url}/model").json()
    assert model["model"] == "lstm" and model["dataset"] == "digits" and model["image_shape"] == [8, 8]
    assert model["classes"] == [str(i) for i in range(10)] and model["engine"] == "torch" and model["steps"]
    assert 0.8 < model["test_metrics"]["test_accuracy"] <= 1


def test_pixels_in_the_dataset_format_are_read_correctly(server, test_digits):
    images, labels = test_digits
    answers = httpx.post(f"{server.url}/predict/batch", json={"pixels": images.tolist()}).json()["predictions"]
    predicted = [int(answer["predicted"]) for answer in answers]
    assert np.mean(np.array(predicted) == labels) >= 0.8
    for answer in answers:
        assert sum(answer["probabilities"]) == pytest.approx(1.0)
        assert answer["top_k"][0]["class"] == answer["predicted"] and len(answer["top_k"]) == 3
    one = httpx.post(f"{server.url}/predict?top_k=2&steps=true", json={"pixels": images[0].tolist()}).json()
    assert one["predicted"] == answers[0]["predicted"] and len(one["top_k"]) == 2
    assert len(one["steps"]) == 8 and all(sum(row) == pytest.approx(1.0) for row in one["steps"]), "one per row"
    # two float32 computations of the same numbers: the fused nn.LSTM and the step-by-step explicit cells
    assert one["steps"][-1] == pytest.approx(one["probabilities"], rel=1e-5, abs=1e-7)


def test_pictures_by_upload_and_by_base64_agree(server, test_digits):
    images, _ = test_digits
    picture = png_bytes(np.kron(images[3], np.ones((16, 16), np.uint8)))  # 128x128, as a user's picture
    uploaded = httpx.post(f"{server.url}/predict", files={"image": ("digit.png", picture, "image/png")}).json()
    encoded = httpx.post(f"{server.url}/predict", json={"image": base64.b64encode(picture).decode()}).json()
    data_url = "data:image/png;base64," + base64.b64encode(picture).decode()
    from_canvas = httpx.post(f"{server.url}/predict", json={"image": data_url}).json()
    assert uploaded["probabilities"] == encoded["probabilities"] == from_canvas["probabilities"]
    batch = httpx.post(f"{server.url}/predict/batch",
                       files=[("images", ("a.png", picture, "image/png")), ("images", ("b.png", picture, "image/png"))])
    assert [p["predicted"] for p in batch.json()["predictions"]] == [uploaded["predicted"]] * 2


BAD_REQUESTS = {
    "not an image": (dict(files={"image": ("x.png", b"hello, I am text", "image/png")}), 422, "not a picture"),
    "empty body": (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty"),
    "truncated PNG": (dict(files={"image": ("x.png", png_bytes(np.full((64, 64), 200, np.uint8))[:60],
                                            "image/png")}), 422, "picture"),
    "50-megapixel image": (dict(files={"image": ("big.png", png_claiming(8000, 6500), "image/png")}), 422, "pixels"),
    "decompression bomb": (dict(files={"image": ("bomb.png", png_claiming(60000, 60000), "image/png")}), 422,
                           "pixels"),
    "upload over the size limit": (dict(files={"image": ("huge.png", b"\0" * (3 * 2**20), "image/png")}), 413,
                                   "limit"),
    "JSON of the wrong shape": (dict(json={"pixels": [[1, 2, 3]]}), 422, "shaped"),
    "JSON without a known key": (dict(json={"picture": "abc"}), 422, "image"),
    "a JSON list": (dict(json=[1, 2, 3]), 422, "object"),
    "values outside 0..255": (dict(json={"pixels": [[300] * 8] * 8}), 422, "0..255"),
    "NaN": (dict(content=json.dumps({"pixels": [[float("nan")] * 8] * 8}),
                 headers={"content-type": "application/json"}), 422, "NaN"),
    "invalid JSON": (dict(content=b"{not json", headers={"content-type": "application/json"}), 400, "JSON"),
    "invalid base64": (dict(json={"image": "***"}), 422, "base64"),
    "wrong content type": (dict(content=b"abc", headers={"content-type": "text/plain"}), 415, "content type"),
    "a blank picture": (dict(files={"image": ("blank.png", png_bytes(np.full((64, 64), 255, np.uint8)),
                                              "image/png")}), 422, "ink"),
    "top_k out of range": (dict(json={"pixels": [[0] * 8] * 8}, params={"top_k": 0}), 422, "top_k"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_with_a_reason_and_the_server_keeps_serving(server, case):
    request, status, word = BAD_REQUESTS[case]
    response = httpx.post(f"{server.url}/predict", timeout=30, **request)
    assert response.status_code == status, response.text
    assert word.lower() in response.json()["error"].lower()
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_a_huge_batch_is_refused(server):
    response = httpx.post(f"{server.url}/predict/batch", json={"pixels": [[[0] * 8] * 8] * 17})
    assert response.status_code == 413 and "1 to 16 images" in response.json()["error"]
    one_in_batch_route = httpx.post(f"{server.url}/predict", files=[("image", ("a.png", b"x", "image/png"))] * 2)
    assert one_in_batch_route.status_code == 422 and "/predict/batch" in one_in_batch_route.json()["error"]
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_openapi_docs_are_served(server):
    assert httpx.get(f"{server.url}/docs").status_code == 200
    assert "/predict/batch" in httpx.get(f"{server.url}/openapi.json").json()["paths"]
