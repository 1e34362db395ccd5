"""mteswap: an executable model of arm64 MTE tag save/restore across swap, with large folios."""

__version__ = "0.1.0"
