"""Model families, discovered through the registry.

Importing this package imports every module in it, so a new model is one file here with a class under
`@register_model("name")`; nothing else needs to list it.
"""

import importlib
import pkgutil

from seqvision.models.registry import (
    build_model,
    get_model_entry,
    model_names,
    register_model,
    resolve_model_options,
)

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["build_model", "get_model_entry", "model_names", "register_model", "resolve_model_options"]
