"""Datasets that install with the package and need no network."""
