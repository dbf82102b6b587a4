"""sidrec: generative recommendation with semantic IDs.

Pipeline: ``prepare -> embed -> tokenize -> train -> evaluate -> recommend``.
Each stage lives in its own subpackage (``sidrec.data``, ``sidrec.embed``,
``sidrec.tokenizers``, ``sidrec.models``, ``sidrec.training``,
``sidrec.generation``, ``sidrec.metrics``).
"""

from sidrec.errors import SidrecError

__version__ = "0.1.0"
__all__ = ["SidrecError", "__version__"]
