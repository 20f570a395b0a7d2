"""Model families, discovered through the registry. Importing this package registers them all."""

from seqvision.models import cnn, hybrid, recurrent, renet  # noqa: F401  (each registers its models)
from seqvision.models.registry import (
    build_model,
    get_model_entry,
    model_names,
    register_model,
    resolve_model_options,
)

__all__ = ["build_model", "get_model_entry", "model_names", "register_model", "resolve_model_options"]
