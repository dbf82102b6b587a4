"""sidrec: generative recommendation with semantic IDs.

Pipeline: ``prepare -> embed -> tokenize -> train -> evaluate -> recommend``.
Each stage lives in its own subpackage (``sidrec.data``, ``sidrec.embed``,
``sidrec.tokenizers``, ``sidrec.models``, ``sidrec.training``,
``sidrec.generation``, ``sidrec.metrics``).
"""

from typing import Any

from sidrec.errors import SidrecError

__version__ = "0.1.0"
__all__ = ["AddedItems", "Recommendation", "Recommender", "SidrecError", "__version__"]


def __getattr__(name: str) -> Any:
    # the Python API imports torch: load it on first use, not on `import sidrec`
    if name in ("Recommender", "Recommendation", "AddedItems"):
        from sidrec import api

        return getattr(api, name)
    raise AttributeError(f"module 'sidrec' has no attribute {name!r}")
