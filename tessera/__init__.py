"""Tessera: entity resolution over many heterogeneous source systems."""

__version__ = "0.1.0"
