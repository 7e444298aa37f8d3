"""Vertebra: outcomes registry and clinical decision support for regenerative therapy of chronic low back pain."""

__version__ = "0.1.0"
