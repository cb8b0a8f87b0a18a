"""The library version (imports nothing, so any module can stamp it without a cycle)."""

__version__ = "0.3.0"
