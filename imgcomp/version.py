"""The package version, defined once here (a module with no imports, so any layer may read it)."""

__version__ = "0.1.0"
