"""SID tokenizers (a registry) and the SID <-> item table."""

from sidrec.tokenizers.sid_table import SIDTable

__all__ = ["SIDTable"]
