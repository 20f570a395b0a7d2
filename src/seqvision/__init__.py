"""seqvision: classify images with recurrent neural networks.

    import seqvision
    result = seqvision.train(model="lstm", dataset="digits", epochs=5)
    seqvision.evaluate(result.run_dir)

Heavy modules (torch, Lightning) load on first use, so `import seqvision` and `seqvision --help` stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": "seqvision.config",
    "train": "seqvision.experiments.train_test",
    "TrainResult": "seqvision.experiments.train_test",
    "evaluate": "seqvision.evaluation.evaluate",
    "load_dataset": "seqvision.data",
    "dataset_names": "seqvision.data",
    "model_names": "seqvision.models",
    "build_model": "seqvision.models",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqvision' has no attribute {name!r}")
