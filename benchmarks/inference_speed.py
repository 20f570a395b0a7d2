"""Inference throughput of trained runs: PyTorch against ONNX Runtime, at batch 1 and batch 256, on MNIST test images.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/inference_speed.py RUN_DIR [RUN_DIR ...]
        [--threads N [N ...]] [--repeats 7] [--data-dir DIR]

Both engines do the work `seqvision serve` does for them, minus the softmax: uint8 test images -> the run's
normalisation -> logits. PyTorch runs the model under torch.inference_mode with torch.set_num_threads(N); ONNX
Runtime runs a fresh export of the same model through seqvision.serving.export.OnnxEngine(threads=N). Each thread
count is used for both engines, so the ratio compares engines, not thread counts; the default is the count the
server gives each request (seqvision.serving.predict.THREADS_PER_WORKER). Every figure is the median of
--repeats timed repeats after one untimed warm-up repeat; a repeat of batch 1 is 256 single-image calls over
distinct test images, a repeat of batch 256 is 4 calls of 256 distinct images.

Each run is measured in a fresh child process, so "peak RSS" (resource.getrusage ru_maxrss) is that run's own:
Python, torch, onnxruntime, the test set, the model and its ONNX session, after all its timings.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench_data import require_dataset, run_config
from seqvision.errors import SeqvisionError

BATCH_SIZES = (1, 256)
IMAGES_PER_REPEAT = {1: 256, 256: 1024}
MODEL_FILES = ("run.json", "bundle.json")  # what seqvision.serving.bundle.load_model_source recognises


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def images_per_second(infer: Any, batches: list[Any], repeats: int) -> float:
    """Median images/s over `repeats` passes over `batches`, after one untimed warm-up pass."""
    images = sum(len(batch) for batch in batches)
    for batch in batches:
        infer(batch)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            infer(batch)
        seconds.append(time.perf_counter() - started)
    return images / median(seconds)


def measure_run(run_dir: str, thread_counts: list[int], repeats: int, data_dir: str | None) -> dict[str, Any]:
    """In a child process: load the run, export it to ONNX, time both engines. Returns rows or an error line."""
    import resource
    import tempfile

    import numpy as np
    import torch

    from seqvision.data import load_dataset
    from seqvision.serving.bundle import load_model_source
    from seqvision.serving.export import OnnxEngine, export_onnx

    try:
        loaded = load_model_source(run_dir)
        splits = load_dataset(loaded.config.dataset, data_dir if data_dir is not None else loaded.config.data_dir)
    except SeqvisionError as error:
        return {"error": str(error)}
    model = loaded.model.eval()
    normalise = loaded.normalisation.apply
    test = np.ascontiguousarray(splits.test_images)
    batches = {size: [torch.from_numpy(test[start:start + size].copy())
                      for start in range(0, IMAGES_PER_REPEAT[size], size)] for size in BATCH_SIZES}

    @torch.inference_mode()
    def torch_logits(pixels: torch.Tensor) -> np.ndarray:
        return model(normalise(pixels)).numpy()

    rows = []
    with tempfile.TemporaryDirectory(prefix="seqvision-bench-") as folder:
        path = Path(folder) / "model.onnx"
        started = time.perf_counter()
        export_onnx(model, loaded.image_shape, path)
        export_seconds = time.perf_counter() - started
        for threads in thread_counts:
            torch.set_num_threads(threads)
            engine = OnnxEngine(path, threads=threads)

            def onnx_logits(pixels: torch.Tensor, engine: OnnxEngine = engine) -> np.ndarray:
                return engine.logits(normalise(pixels).numpy())

            check = batches[256][0]
            difference = float(np.abs(onnx_logits(check) - torch_logits(check)).max())
            for size in BATCH_SIZES:
                torch_rate = images_per_second(torch_logits, batches[size], repeats)
                onnx_rate = images_per_second(onnx_logits, batches[size], repeats)
                rows.append({"threads": threads, "batch": size, "torch": torch_rate, "onnx": onnx_rate,
                             "difference": difference})
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    return {"model": loaded.config.model, "dataset": loaded.config.dataset, "rows": rows, "peak_mib": peak_mib,
            "export_seconds": export_seconds, "torch_version": torch.__version__,
            "ort_version": __import__("onnxruntime").__version__}


def server_threads() -> int:
    """The thread count `seqvision serve` gives each request's model work."""
    from seqvision.serving.predict import THREADS_PER_WORKER

    return THREADS_PER_WORKER


def table(results: list[tuple[str, dict[str, Any]]]) -> str:
    lines = ["| run | model | threads (torch = onnx) | batch | torch images/s | onnx images/s | onnx / torch "
             "| torch ms per call | onnx ms per call | peak RSS |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run_dir, result in results:
        for row in result["rows"]:
            lines.append(f"| {run_dir} | `{result['model']}` | {row['threads']} | {row['batch']} "
                         f"| {row['torch']:,.0f} | {row['onnx']:,.0f} | {row['onnx'] / row['torch']:.2f} "
                         f"| {1000 * row['batch'] / row['torch']:.3f} | {1000 * row['batch'] / row['onnx']:.3f} "
                         f"| {result['peak_mib']:,.0f} MiB |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (seqvision train --out) or bundles")
    parser.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                        help="thread counts, each used for both engines [the server's per request]")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per figure; the median is shown [7]")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the dataset's files are [the run's, then $SEQVISION_DATA]")
    args = parser.parse_args()
    for run_dir in args.runs:
        path = Path(run_dir)
        if not path.is_dir() or not any((path / name).is_file() for name in MODEL_FILES):
            what = "does not exist" if not path.exists() else "is not a run folder (no run.json) or bundle"
            print(f"inference_speed.py: {run_dir} {what}; train one first: seqvision train --model lstm "
                  f"--dataset mnist --out {run_dir}", file=sys.stderr)
            return 2
        try:
            config = run_config(run_dir)
            require_dataset(config.dataset, args.data_dir if args.data_dir is not None else config.data_dir)
        except SeqvisionError as error:
            print(f"inference_speed.py: {run_dir}: {error}", file=sys.stderr)
            return 2
    if args.repeats < 1 or (args.threads and min(args.threads) < 1):
        print("inference_speed.py: --repeats and --threads must be at least 1.", file=sys.stderr)
        return 2
    if args.threads is None:
        args.threads = [server_threads()]

    results = []
    for run_dir in args.runs:
        # A fresh process per run: its peak RSS is its own, and no run inherits another's thread pools.
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(measure_run, run_dir, args.threads, args.repeats, args.data_dir).result()
        if "error" in result:
            print(f"inference_speed.py: {run_dir}: {result['error']}", file=sys.stderr)
            return 2
        results.append((run_dir, result))
        for row in result["rows"]:
            print(f"{run_dir}: threads {row['threads']}, batch {row['batch']}: torch {row['torch']:,.0f} images/s, "
                  f"onnx {row['onnx']:,.0f} images/s (max |logit difference| {row['difference']:.1e})",
                  file=sys.stderr)
    first = results[0][1]
    print(f"torch {first['torch_version']}, onnxruntime {first['ort_version']}; median of {args.repeats} repeats "
          "after a warm-up; peak RSS = ru_maxrss of the child process that measured that run.\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
