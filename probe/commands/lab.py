"""`curfew lab ...`: the offline censorship lab."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from probe.commands.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, run_async

if TYPE_CHECKING:
    from probe.lab.simulate import Progress, Summary


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
    serve.add_argument(
        "--helper",
        action="store_true",
        help="serve each control vantage as a test helper (curfew helper on its address); the "
        "written config then has helpers: and no control vantage",
    )
    serve.set_defaults(handler=handle_serve)
    add_simulate(lab_sub)


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2019-05-20T00:00:00+06:00")
    return value


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def add_simulate(lab_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = lab_sub.add_parser(
        "simulate",
        help="probe a scenario for N virtual days in minutes and store the measurements",
        description="Run the real probe engine against the lab on a virtual clock: every vantage x "
        "target at its interval, re-probing changes like the daemon, written to --db with "
        "virtual timestamps.",
    )
    p.add_argument("--scenario", required=True, type=Path, help="a scenario file or a shipped name")
    p.add_argument("--days", required=True, type=float, help="virtual days to simulate")
    p.add_argument("--db", required=True, help="sqlite:///path or postgresql://user:pass@host/db")
    p.add_argument(
        "--start",
        type=_aware,
        default=None,
        help="virtual start (ISO 8601 with offset); default: local midnight of the first dated rule's day",
    )
    p.add_argument("--interval", type=float, default=300.0, help="seconds between probes of a pair (300)")
    p.add_argument(
        "--confirm-interval", type=float, default=30.0, help="re-probe this often after a change (30)"
    )
    p.add_argument("--confirm-count", type=int, default=2, help="a new state counts after K in a row (2)")
    p.add_argument(
        "--loss", type=float, default=0.0, help="lose this share of connections and DNS queries (0-1)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for --loss")
    p.add_argument("--vantages", type=_names, default=None, help="comma-separated (controls always kept)")
    p.add_argument("--targets", type=_names, default=None, help="comma-separated (controls always kept)")
    p.add_argument(
        "--spread",
        action="store_true",
        help="fire each pair at the daemon's own offset in its interval (slower; default: one grid)",
    )
    p.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="no watch windows: do not probe every --confirm-interval around the onsets and offsets "
        "of inferred schedules (for comparison)",
    )
    p.add_argument(
        "--watch-margin",
        type=float,
        default=None,
        help="seconds watched before and after a predicted onset or offset (600)",
    )
    p.add_argument(
        "--network",
        choices=("memory", "kernel"),
        default="memory",
        help="memory: the lab in process on virtual time (fast, reproducible; default); "
        "kernel: the real-socket lab on loopback (real step durations)",
    )
    # Defaults live in probe.lab.simulate (not imported here: it pulls in the engine and store).
    p.add_argument("--step-timeout", type=float, default=None, help="seconds per probe step (0.5)")
    p.add_argument("--bulk-bytes", type=int, default=None, help="bulk download cap in bytes (262144)")
    p.add_argument("--bulk-seconds", type=float, default=None, help="bulk download time cap (0.3)")
    p.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes, each simulating some of the targets from every vantage (default: one per CPU); "
        "the measurements do not depend on it",
    )
    p.add_argument(
        "--state-dir", type=Path, default=Path(".lab-simulate"), help="lab certificates and the spool"
    )
    p.set_defaults(handler=handle_simulate)


class ProgressLine:
    """A one-line progress bar on stderr, redrawn at most `every` seconds (only on a TTY)."""

    def __init__(self, every: float = 0.2) -> None:
        self.every = every
        self._last = 0.0
        self.enabled = sys.stderr.isatty()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < self.every:
            return
        self._last = now
        width = 30
        filled = int(width * min(1.0, p.fraction))
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r[{bar}] {p.fraction * 100:5.1f}%  {p.now:%Y-%m-%d %H:%M} UTC  "
            f"{p.measurements} measurements  {p.rate:.0f}/s "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def handle_simulate(args: argparse.Namespace) -> int:
    from probe.lab import shards
    from probe.lab.scenario import load_scenario
    from probe.lab.simulate import Simulation
    from probe.store import StoreError

    scenario = load_scenario(args.scenario)
    try:
        sim = Simulation(
            days=args.days,
            start=args.start,
            interval=args.interval,
            confirm_interval=args.confirm_interval,
            confirm_count=args.confirm_count,
            loss=args.loss,
            seed=args.seed,
            spread=args.spread,
            watch=args.watch,
            network=args.network,
            vantages=args.vantages,
            targets=args.targets,
            **{
                name: value
                for name in ("step_timeout", "bulk_bytes", "bulk_seconds", "watch_margin")
                if (value := getattr(args, name)) is not None
            },
        )
        sim.check(scenario)  # before any work
    except ValueError as exc:  # the arguments: a usage error, as argparse's own
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        progress = ProgressLine()
        try:
            summary = shards.run(scenario, sim, args.db, args.state_dir, jobs=args.jobs, on_progress=progress)
        finally:
            progress.close()
    except (ValueError, StoreError, RuntimeError) as exc:
        print(f"curfew: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(describe(summary))
    return EXIT_OK


def describe(summary: Summary) -> str:
    """One line for people: what was simulated, how fast, and the verdicts."""
    verdicts = ", ".join(f"{v} {n}" for v, n in summary.verdicts.most_common())
    state = "stopped at" if summary.stopped else "simulated to"
    return (
        f"{summary.measurements} measurements from {summary.start:%Y-%m-%d %H:%M} UTC, {state} "
        f"{summary.reached:%Y-%m-%d %H:%M} UTC, in {summary.elapsed:.0f} s ({summary.rate:.0f}/s; "
        f"{summary.confirmations} confirmation re-probes, {summary.watches} watch-window probes): "
        f"{verdicts or 'nothing'}"
    )


def handle_serve(args: argparse.Namespace) -> int:
    from probe.lab.lab import serve

    with contextlib.suppress(KeyboardInterrupt):
        run_async(serve(args.scenario, args.state_dir, args.at, ephemeral=args.ephemeral, helper=args.helper))
    return EXIT_OK
