"""Architecture registry: ``@register_model("name")`` on a class, ``build_model`` from a config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sidrec.config import ModelConfig
from sidrec.errors import SidrecError

_MODELS: dict[str, type[nn.Module]] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding an architecture under ``name`` (the value of ``model.arch``).

    The class needs ``from_config(model_cfg, vocab_sizes, max_history)`` and ``config()``
    returning its constructor arguments.
    """

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        assert name not in _MODELS, f"model {name!r} registered twice"
        _MODELS[name] = cls
        cls.arch = name
        return cls

    return deco


def available_models() -> list[str]:
    """Names accepted by ``model.arch`` (not the checkpoint-only ones, e.g. UniGRec's ``encdec-soft``)."""
    return sorted(n for n, cls in _MODELS.items() if not getattr(cls, "checkpoint_only", False))


def build_model(model_cfg: ModelConfig, vocab_sizes: list[int], max_history: int = 20) -> nn.Module:
    """Instantiate the architecture named by ``model_cfg.arch``.

    Args:
        model_cfg: the ``model`` section of the run config.
        vocab_sizes: vocabulary size of each SID position (``SIDTable.vocab_sizes``).
        max_history: most recent history items the model sees (``data.max_history``).

    Returns:
        An ``nn.Module`` implementing :class:`sidrec.models.base.SIDGenerator`.
    """
    if model_cfg.arch not in _MODELS:
        raise SidrecError(f"model.arch must be one of {', '.join(available_models())}, got {model_cfg.arch!r}")
    from sidrec.config_ranges import check_section

    check_section(model_cfg, "model")  # also for configs built in code, not loaded
    return _MODELS[model_cfg.arch].from_config(model_cfg, list(vocab_sizes), max_history)


def build_from_config(arch: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from ``arch`` and the dict its :meth:`config` returned (checkpoints)."""
    if arch not in _MODELS:
        raise SidrecError(f"checkpoint architecture must be one of {', '.join(available_models())}, got {arch!r}")
    return _MODELS[arch](**config)
