"""The seed programs themselves, in Keras, timed the way benchmarks/side_by_side.py times seqvision.

    make bench-env            # once: creates .venv-keras with TensorFlow's CPU build and Keras
    .venv-keras/bin/python benchmarks/keras_seeds.py seed-000-lstm --data-dir ../shared/datasets/mnist --out r.json

Runs under the Keras environment, never under seqvision's (TensorFlow is not a dependency of the package),
so it reads the MNIST IDX files with numpy itself. Each program is written here from the seeds' text:
- seed-000-lstm: LSTM(128, activation='sigmoid') -> Dropout(0.2) -> Dense(10, softmax), RMSprop(0.01),
  batch 64, 10 epochs, validation_split=0.2 (seed 000);
- seed-002-stacked-lstm: LSTM(50, return_sequences) -> Dropout(0.2) -> LSTM(50) -> Dropout(0.2) -> Dense(10),
  Adam(1e-3), batch 64, 10 epochs, validated on the test set (seed 002, first program);
- seed-002-cnn: Conv(32, 5x5, same, relu) -> MaxPool(2, same) -> Conv(64, 5x5, same, relu) -> MaxPool(2, same)
  -> Flatten -> Dense(1024, relu) -> Dropout(0.5) -> Dense(10), Adam(1e-4), batch 64, 10 epochs, validated on
  the test set (seed 002, second program).

After every epoch the test accuracy is measured with the clock stopped, so `train_seconds` (cumulative,
per epoch) is training time alone, as for seqvision. The JSON written to --out holds those, the final test
accuracy and the peak resident memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
PROGRAMS = ("seed-000-lstm", "seed-002-stacked-lstm", "seed-002-cnn")


def read_idx(folder: Path, name: str) -> np.ndarray:
    """One IDX file (gzipped or not) as an array: a 4-byte magic whose last byte is the rank, then the sizes."""
    path = next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)
    if path is None:
        sys.exit(f"error: {folder} has no {name}[.gz]; pass --data-dir with the four MNIST files (for this "
                 "repository: --data-dir ../shared/datasets/mnist).")
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    rank = raw[3]
    shape = np.frombuffer(raw, ">u4", count=rank, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(shape)


def build(program: str, keras: Any) -> Any:
    layers = keras.layers
    if program == "seed-000-lstm":
        model = keras.Sequential([keras.Input((28, 28)), layers.LSTM(128, activation="sigmoid"), layers.Dropout(0.2),
                                  layers.Dense(10, activation="softmax")])
        optimizer = keras.optimizers.RMSprop(learning_rate=0.01)
    elif program == "seed-002-stacked-lstm":
        model = keras.Sequential([keras.Input((28, 28)), layers.LSTM(50, return_sequences=True), layers.Dropout(0.2),
                                  layers.LSTM(50), layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
        optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    else:
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 5, padding="same", activation="relu"), layers.MaxPooling2D(2, 2, "same"),
            layers.Conv2D(64, 5, padding="same", activation="relu"), layers.MaxPooling2D(2, 2, "same"),
            layers.Flatten(), layers.Dense(1024, activation="relu"), layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ])
        optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", choices=PROGRAMS)
    parser.add_argument("--data-dir", type=Path, required=True, help="the folder holding the four MNIST files")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-limit", type=int, default=0, help="use only the first N training images")
    parser.add_argument("--seed", type=int, default=0, help="Keras's random seed (weights, shuffling, dropout)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.seed < 0:
        sys.exit(f"error: --seed must be 0 or more (got {args.seed}); Keras seeds NumPy, which refuses negative seeds.")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # The files first: a missing one is reported before TensorFlow spends seconds loading.
    train_x, train_y, test_x, test_y = (read_idx(args.data_dir, name) for name in IDX_FILES)
    try:
        import keras
    except ImportError:
        sys.exit(f"error: Keras is not installed for {sys.executable}; run this under .venv-keras/bin/python, "
                 "which `make bench-env` creates.")

    keras.utils.set_random_seed(args.seed)
    if args.train_limit:
        train_x, train_y = train_x[:args.train_limit], train_y[:args.train_limit]
    shape = (-1, 28, 28, 1) if args.program == "seed-002-cnn" else (-1, 28, 28)
    train_x, test_x = (x.reshape(shape).astype("float32") / 255.0 for x in (train_x, test_x))
    train_y, test_y = (keras.utils.to_categorical(y, 10) for y in (train_y, test_y))
    model = build(args.program, keras)
    validation = {"validation_split": 0.2} if args.program == "seed-000-lstm" else {"validation_data": (test_x, test_y)}

    class TestAccuracyOffTheClock(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.train_seconds, self.test_accuracy, self.elapsed, self.started = [], [], 0.0, 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.elapsed += time.perf_counter() - self.started
            self.train_seconds.append(self.elapsed)
            self.test_accuracy.append(float(self.model.evaluate(test_x, test_y, batch_size=1000, verbose=0)[1]))
            print(f"epoch {epoch + 1}: {self.elapsed:.1f} s training, test accuracy {self.test_accuracy[-1]:.4f}",
                  file=sys.stderr, flush=True)

    clock = TestAccuracyOffTheClock()
    model.fit(train_x, train_y, batch_size=64, epochs=args.epochs, verbose=0, callbacks=[clock], **validation)
    record = {
        "program": args.program, "framework": f"Keras {keras.__version__}", "seed": args.seed,
        "epochs": args.epochs, "train_seconds": clock.train_seconds, "test_accuracy": clock.test_accuracy,
        "final_test_accuracy": clock.test_accuracy[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(record, indent=1))
    partial.replace(args.out)


if __name__ == "__main__":
    main()
