"""The portable model bundle: a folder anyone can be handed, loaded without unpickling anything.

    BUNDLE/
      model.safetensors   the weights (safetensors: tensors only, no code)
      bundle.json         format version, model name and options, image shape, class names, normalisation,
                          preprocessing settings, the run's test metrics

`seqvision predict` and `seqvision serve` accept a bundle or a run folder alike (see `load_model_source`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from seqvision.atomic import atomic_path, write_json_atomic
from seqvision.config import TrainConfig
from seqvision.data.batches import Normalisation
from seqvision.errors import BundleError, ConfigError, RunFolderError

BUNDLE_FORMAT = 1
WHOLE_PICTURE = "the whole picture, resized"
WEIGHTS_FILE = "model.safetensors"
DESCRIPTION_FILE = "bundle.json"


@dataclass
class LoadedModel:
    """A model ready for inference, with everything needed to feed it and to name its answers."""

    model: nn.Module
    config: TrainConfig
    image_shape: tuple[int, ...]
    classes: tuple[str, ...]
    normalisation: Normalisation
    test_metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # How a user's picture becomes a model input (seqvision.data.images): light ink on a dark field, the ink
    # scaled to fill this part of the side, as the dataset's images do, and centred by its centre of mass.
    box_fraction: float = 20 / 28
    # Or, for colour models and models of folder datasets, the whole picture resized, as their images were made.
    whole: bool = False

    @property
    def preprocessing(self) -> dict[str, Any]:
        if self.whole or len(self.image_shape) == 3:
            colour = "rgb" if len(self.image_shape) == 3 else "grey"
            return {"fit": WHOLE_PICTURE, "colour": colour, "box_fraction": 1.0}
        return {"ink": "light-on-dark", "box_fraction": self.box_fraction, "centre": "centre of mass"}

    def describe(self) -> dict[str, Any]:
        return {"model": self.config.model, "dataset": self.config.dataset, "image_shape": list(self.image_shape),
                "classes": list(self.classes), "normalisation": {"mean": self.normalisation.mean,
                                                                 "std": self.normalisation.std},
                "test_metrics": self.test_metrics, "preprocessing": self.preprocessing, "source": self.source}


def load_model_source(path: str | os.PathLike[str]) -> LoadedModel:
    """A bundle folder (it has bundle.json) or a run folder (its best checkpoint and test metrics)."""
    path = Path(path)
    if (path / DESCRIPTION_FILE).is_file():
        return read_bundle(path)
    if (path / "run.json").is_file():
        return _from_run(path)
    raise BundleError(f"{path} is neither a model bundle (no {DESCRIPTION_FILE}) nor a run folder (no run.json); "
                      "pass a folder that `seqvision export --format bundle` or `seqvision train` wrote.")


def _from_run(path: Path) -> LoadedModel:
    from seqvision.runs.checkpoint import rebuild_model
    from seqvision.runs.folder import RunFolder

    run = RunFolder.open(path)
    checkpoint = run.checkpoint("best")
    if not checkpoint.is_file():
        raise RunFolderError(f"{run.path} has no best checkpoint yet; train it to the end of at least one epoch.")
    from seqvision.data.folder import is_folder_dataset
    from seqvision.data.registry import box_fraction

    model, description = rebuild_model(checkpoint)
    metrics = json.loads(run.test_metrics_path.read_text()) if run.test_metrics_path.is_file() else {}
    dataset = description.config.dataset
    return LoadedModel(model, description.config, description.image_shape, description.classes,
                       description.normalisation, metrics, str(run.path), box_fraction(dataset),
                       is_folder_dataset(dataset))


def write_bundle(loaded: LoadedModel, out: str | os.PathLike[str]) -> Path:
    """Write `loaded` as a bundle folder; refuses to overwrite a folder that holds anything else."""
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(p.name not in (WEIGHTS_FILE, DESCRIPTION_FILE)
                                                  for p in out.iterdir())):
        raise ConfigError(f"{out} exists and is not a bundle folder; choose another --out.")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().contiguous().cpu() for name, value in loaded.model.state_dict().items()}
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp))
    from seqvision import __version__

    write_json_atomic(out / DESCRIPTION_FILE, {
        "format": BUNDLE_FORMAT, "seqvision_version": __version__, "model": loaded.config.model,
        "config": loaded.config.to_dict(), "image_shape": list(loaded.image_shape), "classes": list(loaded.classes),
        "normalisation": {"mean": loaded.normalisation.mean, "std": loaded.normalisation.std},
        "preprocessing": loaded.preprocessing, "test_metrics": loaded.test_metrics, "tensors": sorted(tensors),
    })
    return out


def read_bundle(path: str | os.PathLike[str]) -> LoadedModel:
    """Rebuild a bundle's model; a newer format, or weights that do not match the model exactly, are refused."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from seqvision.models import build_model

    path = Path(path)
    try:
        info = json.loads((path / DESCRIPTION_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"cannot read {path / DESCRIPTION_FILE}: {error}; the bundle is damaged.") from None
    version = info.get("format") if isinstance(info, dict) else None
    if not isinstance(version, int) or version > BUNDLE_FORMAT:
        raise BundleError(f"{path} is a bundle of format {version!r}, and this version of seqvision reads format "
                          f"{BUNDLE_FORMAT}; upgrade seqvision, or export the bundle again with this version.")
    try:
        config = TrainConfig.from_dict(info["config"], origin=f"{path / DESCRIPTION_FILE}")
        image_shape, classes = tuple(info["image_shape"]), tuple(info["classes"])
        normalisation = Normalisation(**info["normalisation"])
        box_fraction = float(info["preprocessing"]["box_fraction"])
        whole = info["preprocessing"].get("fit") == WHOLE_PICTURE
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise BundleError(f"{path / DESCRIPTION_FILE} lacks or garbles {error}; the bundle is damaged.") from None
    try:
        tensors = load_file(str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as error:
        raise BundleError(f"cannot read {path / WEIGHTS_FILE}: {error}; the bundle is damaged.") from None
    model = build_model(config, image_shape, len(classes))
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or extra:
        raise BundleError(f"{path / WEIGHTS_FILE} does not match a {config.model} model: "
                          f"missing tensors {missing or 'none'}, unexpected tensors {extra or 'none'}.")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:
        raise BundleError(f"{path / WEIGHTS_FILE} does not fit its model: {str(error).splitlines()[-1]}") from None
    return LoadedModel(model.eval(), config, image_shape, classes, normalisation, info.get("test_metrics", {}),
                       str(path), box_fraction, whole)
