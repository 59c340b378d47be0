"""`curfew lab ...`: the offline censorship lab."""

from __future__ import annotations

import argparse
import contextlib
from datetime import datetime
from pathlib import Path

from probe.commands.common import EXIT_OK, run_async


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="the offline censorship lab")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = lab_sub.add_parser("serve", help="serve a lab scenario on loopback until interrupted")
    serve.add_argument("--scenario", required=True, type=Path)
    serve.add_argument("--state-dir", type=Path, default=Path(".lab"), help="where ca.pem and curfew.yaml go")
    serve.add_argument(
        "--at",
        type=datetime.fromisoformat,
        default=None,
        help="start the lab's clock at this time (ISO 8601 with offset), so a scenario's windows apply now",
    )
    serve.add_argument(
        "--ephemeral", action="store_true", help="free ports instead of the scenario's (no root needed)"
    )
    serve.set_defaults(handler=handle_serve)


def handle_serve(args: argparse.Namespace) -> int:
    from probe.lab.lab import serve

    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve(args.scenario, args.state_dir, args.at, ephemeral=args.ephemeral))
    return EXIT_OK
