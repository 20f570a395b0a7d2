"""Model families, discovered through the registry. Importing this package registers them all."""

from seqvision.models import recurrent  # noqa: F401  (registers its models)
from seqvision.models.registry import build_model, get_model_entry, model_names, register_model

__all__ = ["build_model", "get_model_entry", "model_names", "register_model"]
