"""What every subcommand shares: exit codes, the default config path, running coroutines."""

from __future__ import annotations

import argparse

from probe.runner import run_async

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
DEFAULT_CONFIG = "config/curfew.yaml"

__all__ = ["DEFAULT_CONFIG", "EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "add_config", "run_async"]


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"YAML config (default {DEFAULT_CONFIG})")
