"""curfew: continuous Internet-censorship measurement."""

__version__ = "0.1.0"
SOFTWARE_NAME = "curfew"
