"""Models for 64x64 g/r/z stamps, chosen by name: `create_model("resnet18")` -> logits of shape (B,).

Registered nets: `nets` (ResNets, small_cnn), `polar` (polar_cnn, polar_fourier), `efficientnet`, `convnext`; their params and FLOPs per stamp
are the manual's table in docs/models.md (`python -m darkhaloscope.models.table`).
`--init FILE`: `models.init.load_init`.
`create_model("timm:NAME")`: any timm architecture where timm imports (`models.timm_backend`, optional).
"""

from darkhaloscope.models import convnext as _convnext  # noqa: F401  (each module registers its models)
from darkhaloscope.models import efficientnet as _efficientnet  # noqa: F401
from darkhaloscope.models import nets as _nets  # noqa: F401
from darkhaloscope.models import polar as _polar  # noqa: F401
from darkhaloscope.models.init import load_init
from darkhaloscope.models.registry import (LensClassifier, count_params, create_model, describe_models,
                                           forward_flops, list_models, pools_itself, register_model)

__all__ = ["LensClassifier", "count_params", "create_model", "describe_models", "forward_flops",
           "list_models", "load_init", "pools_itself", "register_model"]
