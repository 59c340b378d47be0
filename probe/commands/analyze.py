"""`curfew analyze --rebuild`: recompute every blackout episode and the hourly counts from the
stored measurements.

Fills in `measurements.local_day`/`local_hour` where they are missing (rows from before they
existed), recounts `hourly_counts` from all of `measurements`, deletes the `blackouts` rows and
detects the episodes again with the daemon's own tracker (open after `confirm_count` blocked
verdicts in a row, close after as many oks).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from probe.commands.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_config, run_async

if TYPE_CHECKING:
    from probe.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("analyze", help="blackout episodes from the stored measurements")
    add_config(parser)
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="recount the hourly counts and detect all episodes again from measurements",
    )
    parser.add_argument(
        "--rejudge",
        action="store_true",
        help="with --rebuild: first judge every measurement again from its stored observations "
        "and the control kept with it (after an analysis change)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from probe.daemon.logs import redact
    from probe.redaction import redact_url
    from probe.store import StoreError

    if not args.rebuild:
        print("curfew analyze: nothing to do (did you mean --rebuild?)", file=sys.stderr)
        return EXIT_USAGE
    from probe.config import load_config

    config = load_config(args.config)
    try:
        rejudged: list[tuple[int, int]] = []
        filled, hours, episodes = run_async(rebuild(config, rejudged if args.rejudge else None))
    except (StoreError, OSError) as exc:
        print(f"curfew: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    for judged, changed in rejudged:
        print(f"{redact_url(config.database_url)}: {judged} measurements judged again, {changed} changed")
    print(
        f"{redact_url(config.database_url)}: {episodes} episodes; {hours} hourly counts;"
        f" local time set on {filled} measurements"
    )
    return EXIT_OK


async def rebuild(config: Config, rejudged: list[tuple[int, int]] | None = None) -> tuple[int, int, int]:
    """Upgrade the schema, fill local times, recount the hourly counts, rebuild episodes:
    (rows filled, hourly_counts rows, episodes), in one transaction.

    With `rejudged` (a list), every measurement is first judged again from its stored
    observations (`probe.store.rejudge`) and (rows judged, rows changed) is appended to it."""
    import asyncio

    from probe.store import blackouts, rollup, upgrade
    from probe.store.engine import create_engine
    from probe.store.errors import database_errors

    zones = {v.name: v.timezone for v in config.vantages}
    engine = create_engine(config.database_url)
    try:
        with database_errors("analyze"):
            await asyncio.to_thread(upgrade, config.database_url)
            async with engine.begin() as conn:
                if rejudged is not None:
                    from probe.store.rejudge import rejudge_all

                    rejudged.append(await rejudge_all(conn))
                filled = await blackouts.fill_local_time(conn, zones)
                hours = await rollup.recount(conn)
                episodes = await blackouts.rebuild(
                    conn, zones, config.confirm_count, config.confirm_count, config.episode_min_span
                )
    finally:
        await engine.dispose()
    return filled, hours, episodes
