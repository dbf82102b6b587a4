"""User-facing errors.

Anything a user can cause (a missing file, a malformed line, an unknown id, a
bad config value) raises :class:`SidrecError` (a ``ValueError``) with one line
that names what is wrong and where. The CLI prints that line and exits with a
non-zero status instead of a traceback. ``assert`` is kept for internal
invariants only.
"""


class SidrecError(ValueError):
    """A user mistake: bad input, bad config, missing artifact."""
