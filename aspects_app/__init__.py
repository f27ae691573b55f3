"""Astrological aspects and compatibility for Django, on a Django-free NumPy/Numba/CuPy engine."""

__version__ = "0.1.0"
