"""sidrec.models: sequence models that generate the next item's SID.

Architectures register themselves with :func:`register_model`; build one from a
config with :func:`build_model`. All implement :class:`sidrec.models.base.SIDGenerator`.
"""

from sidrec.models import deconly, encdec, soft_history  # noqa: F401  (registers the architectures)
from sidrec.models.base import HistoryBatch, SIDGenerator
from sidrec.models.registry import available_models, build_from_config, build_model, register_model

__all__ = ["HistoryBatch", "SIDGenerator", "available_models", "build_from_config", "build_model", "register_model"]
