"""Models for 64x64 g/r/z stamps, chosen by name: `create_model("resnet18")` -> logits of shape (B,).

See `darkhaloscope.models.nets` for the registered nets, their stems, parameter counts and FLOPs.
"""

from darkhaloscope.models import nets as _nets  # noqa: F401  (registers the built-in models)
from darkhaloscope.models.registry import (LensClassifier, count_params, create_model, describe_models,
                                           forward_flops, list_models, register_model)

__all__ = ["LensClassifier", "count_params", "create_model", "describe_models", "forward_flops",
           "list_models", "register_model"]
