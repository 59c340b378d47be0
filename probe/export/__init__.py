"""Measurements out of the store in other people's formats (`ooni.py`: OONI's)."""
