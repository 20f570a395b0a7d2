"""The HTTP app: FastAPI around one Predictor, with the drawing page at `/`.

    GET  /                the drawing page (served from the package; no outside resources)
    GET  /health          {"status": "ok"}
    GET  /model           model, dataset, classes, image shape, test metrics, engine
    POST /predict         one picture: a multipart upload (field "image"), or JSON {"image": base64} or
                          {"pixels": [[0..255, ...], ...]} of the model's image shape ((H, W), or (H, W, 3) for a
                          colour model)
    POST /predict/batch   several: multipart fields "images", or JSON {"images": [base64, ...]} or
                          {"pixels": [image, image, ...]}
    GET  /docs            OpenAPI documentation

Query options of both predict routes: top_k (default 3), preprocess (default true for pictures; pixel arrays are
fed as they are), steps (LSTM models: the class probabilities after each row).

Every bad request gets a 4xx with {"error": "..."} naming what was wrong, and the server keeps serving. Model work
runs in worker threads (a bounded number), never on the event loop, under torch.inference_mode.
"""

from __future__ import annotations

import base64
import binascii
import json
from importlib import resources
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from seqvision.errors import ConfigError, SeqvisionError
from seqvision.serving.predict import INFERENCE_WORKERS, THREADS_PER_WORKER, Predictor

MAX_UPLOAD_BYTES = 4 * 2**20
MAX_BATCH = 64
MAX_TOP_K = 100


class RequestError(Exception):
    """A request the server cannot answer; carries the HTTP status and the message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def create_app(predictor: Predictor, *, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_batch: int = MAX_BATCH,
               ) -> FastAPI:
    app = FastAPI(title="seqvision", version=_version(),
                  description=f"{predictor.loaded.config.model} trained on {predictor.loaded.config.dataset}")
    limiter = anyio.CapacityLimiter(INFERENCE_WORKERS)

    @app.exception_handler(RequestError)
    async def refuse(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(SeqvisionError)
    async def refuse_input(request: Request, error: SeqvisionError) -> JSONResponse:
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page_file("index.html"))

    @app.get("/page.js", include_in_schema=False)
    async def page_script() -> Response:
        return Response(_page_file("page.js"), media_type="text/javascript")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return {**predictor.loaded.describe(), "engine": predictor.engine, "steps": predictor.reads_steps}

    async def answer(request: Request, many: bool, top_k: int, preprocess: bool | None, steps: bool
                     ) -> dict[str, Any]:
        if not 1 <= top_k <= MAX_TOP_K:
            raise RequestError(422, f"top_k must be between 1 and {MAX_TOP_K}, got {top_k}.")
        images = await _images_from(request, many, predictor, max_upload_bytes, max_batch, preprocess, limiter)
        return await anyio.to_thread.run_sync(_predictions, predictor, images, top_k, steps, limiter=limiter)

    @app.post("/predict")
    async def predict(request: Request, top_k: int = 3, preprocess: bool | None = None,
                      steps: bool = False) -> dict[str, Any]:
        result = await answer(request, False, top_k, preprocess, steps)
        return {**result["predictions"][0], **({"steps": result["steps"][0]} if steps else {})}

    @app.post("/predict/batch")
    async def predict_batch(request: Request, top_k: int = 3, preprocess: bool | None = None,
                            steps: bool = False) -> dict[str, Any]:
        return await answer(request, True, top_k, preprocess, steps)

    return app


def _predictions(predictor: Predictor, images: np.ndarray, top_k: int, steps: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"predictions": [p.as_dict(top_k) for p in predictor.predict(images)]}
    if steps:
        result["steps"] = [predictor.step_probabilities(image) for image in images]
    return result


async def _images_from(request: Request, many: bool, predictor: Predictor, max_bytes: int, max_batch: int,
                       preprocess: bool | None, limiter: anyio.CapacityLimiter) -> np.ndarray:
    """The request's pictures as uint8 arrays of the model's image shape, or a RequestError saying why not."""
    body = await _read_limited(request, max_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body:
        raise RequestError(400, "the request body is empty; send an image (multipart field 'image', or JSON with "
                                "'image' as base64 or 'pixels' as an array).")
    if kind == "multipart/form-data":
        pictures = await _multipart_pictures(request, body, many, max_batch)
        return await _prepared(pictures, predictor, preprocess is not False, limiter)
    if kind == "application/json":
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RequestError(400, f"the body is not valid JSON: {error}.") from None
        if not isinstance(payload, dict):
            raise RequestError(422, "the JSON body must be an object with 'image' (base64) or 'pixels' (array).")
        if "pixels" in payload:
            pixels = _pixel_array(payload["pixels"], predictor.image_shape, many, max_batch)
            if preprocess:
                raise RequestError(422, "preprocess applies to pictures; pixel arrays are fed as they are.")
            return pixels
        key = "images" if many else "image"
        if key not in payload:
            raise RequestError(422, f"the JSON body needs '{key}' ({'a list of base64 strings' if many else 'base64'}"
                                    f") or 'pixels'; it has {sorted(payload)}.")
        encoded = payload[key] if many else [payload[key]]
        if not isinstance(encoded, list) or not all(isinstance(item, str) for item in encoded):
            raise RequestError(422, f"'{key}' must be {'a list of base64 strings' if many else 'a base64 string'}.")
        _check_count(len(encoded), many, max_batch)
        pictures = [_decode_base64(item) for item in encoded]
        return await _prepared(pictures, predictor, preprocess is not False, limiter)
    raise RequestError(415, f"unsupported content type {kind or 'none'!r}; send multipart/form-data or "
                            "application/json.")


async def _read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"the request is {int(declared):,} bytes; the limit is {max_bytes:,} "
                                "(seqvision serve --max-upload-mb).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"the request is over the limit of {max_bytes:,} bytes "
                                    "(seqvision serve --max-upload-mb).")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette re-reads a cached body when the form is parsed
    return body


async def _multipart_pictures(request: Request, body: bytes, many: bool, max_batch: int) -> list[bytes]:
    field = "images" if many else "image"
    try:
        form = await request.form(max_files=max_batch + 1, max_fields=max_batch + 1)
    except Exception as error:  # starlette raises several types for malformed multipart bodies
        raise RequestError(400, f"the multipart body cannot be parsed: {error}.") from None
    uploads = [item for item in form.getlist(field) if hasattr(item, "read")]
    if not uploads:
        raise RequestError(422, f"the multipart body has no file field '{field}'; it has {sorted(set(form.keys()))}.")
    _check_count(len(uploads), many, max_batch)
    return [await upload.read() for upload in uploads]


def _check_count(count: int, many: bool, max_batch: int) -> None:
    if not many and count != 1:
        raise RequestError(422, f"/predict takes one image, got {count}; use /predict/batch for several.")
    if many and not 1 <= count <= max_batch:
        raise RequestError(413 if count > max_batch else 422,
                           f"a batch holds 1 to {max_batch} images, got {count}.")


def _decode_base64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # a data URL, as a canvas's toDataURL() gives
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(422, "'image' is not valid base64.") from None


async def _prepared(pictures: list[bytes], predictor: Predictor, preprocess: bool,
                    limiter: anyio.CapacityLimiter) -> np.ndarray:
    """Decode and prepare in a worker thread: decoding a large picture must not stall the event loop."""

    def work() -> np.ndarray:
        return np.stack([predictor.prepare(data, preprocess) for data in pictures])

    return await anyio.to_thread.run_sync(work, limiter=limiter)


def _pixel_array(values: Any, image_shape: tuple[int, ...], many: bool, max_batch: int) -> np.ndarray:
    expected = ("N", *image_shape) if many else image_shape
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError(422, f"'pixels' must be a numeric array shaped {expected}.") from None
    dimensions = len(image_shape) + 1
    if many:
        if array.ndim != dimensions:
            raise RequestError(422, f"'pixels' must be shaped {expected}, got {array.shape}.")
        _check_count(len(array), many, max_batch)
    else:
        array = array[None]
    if tuple(array.shape[1:]) != tuple(image_shape) or array.ndim != dimensions:
        raise RequestError(422, f"'pixels' must be shaped {expected}, got {np.shape(values)}.")
    if not np.isfinite(array).all():
        raise RequestError(422, "'pixels' holds NaN or infinite values; use numbers from 0 to 255.")
    if array.min() < 0 or array.max() > 255:
        raise RequestError(422, f"'pixels' values must lie in 0..255, got {array.min():g}..{array.max():g}.")
    return np.rint(array).astype(np.uint8)


def _page_file(name: str) -> str:
    return resources.files("seqvision.serving").joinpath("page", name).read_text()


def _version() -> str:
    from seqvision import __version__

    return __version__


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8000, *,
          max_upload_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """Run the app under uvicorn until Ctrl-C."""
    import torch
    import uvicorn

    torch.set_num_threads(THREADS_PER_WORKER)
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}.")
    # No access log: one line per request costs more server CPU than a 28x28 LSTM prediction.
    uvicorn.run(create_app(predictor, max_upload_bytes=max_upload_bytes), host=host, port=port, log_level="info",
                access_log=False)
