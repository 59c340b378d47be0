"""`curfew helper`: serve OONI's Web Connectivity test-helper protocol, measured from here."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.commands.common import EXIT_OK, run_async

if TYPE_CHECKING:
    from probe.helper.settings import HelperFile

# Flag -> key of the `helper:` section; each flag's value is checked by argparse, so a bad one
# exits 2 with a message naming the flag, before anything starts.
_KEYS = {
    "listen": "listen",
    "resolver": "resolver",
    "source_address": "source_address",
    "ca_bundle": "ca_bundle",
    "token_file": "token_file",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "metrics_listen": "metrics_listen",
}


def _host_port(text: str) -> str:
    from probe.helper.settings import parse_listen

    try:
        parse_listen(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected IP:PORT (IPv6 in brackets), got {text!r}") from None
    return text


def _resolver(text: str) -> str:
    from probe.config import parse_resolver

    try:
        parse_resolver(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _ip(text: str) -> str:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an IP address, got {text!r}") from None
    return text


def _file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {text}")
    return path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "helper",
        help="serve the Web Connectivity test helper (OONI's control protocol) for remote vantages",
        description="Answer POST / with a THRequest by measuring the URL from here (DNS, TCP and TLS "
        "to its addresses and the probe's, the page with redirects). Flags override the `helper:` "
        "section of --config. See docs/helper.md.",
    )
    p.add_argument("--config", type=_file, help="YAML file with a helper: section (and probe:, tls:)")
    p.add_argument("--listen", type=_host_port, help="IP:PORT to serve on (default 127.0.0.1:8765)")
    p.add_argument("--resolver", type=_resolver, help='"system", "ip[:port]" or an https:// DoH URL')
    p.add_argument("--source-address", type=_ip, help="bind outgoing connections to this address")
    p.add_argument("--ca-bundle", type=_file, help="PEM roots that judge the targets' certificates")
    p.add_argument(
        "--allow-private",
        action="store_true",
        default=None,
        help="measure loopback/private/link-local targets too (the lab and tests only)",
    )
    p.add_argument("--token-file", type=_file, help="require Authorization: Bearer <this file's content>")
    p.add_argument("--tls-cert", type=_file, help="PEM certificate chain: serve HTTPS (with --tls-key)")
    p.add_argument("--tls-key", type=_file, help="PEM private key for --tls-cert")
    p.add_argument("--metrics-listen", type=_host_port, help="IP:PORT of the helper's own /metrics")
    p.set_defaults(handler=handle, parser=p)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The `helper:` keys the command line sets."""
    out: dict[str, Any] = {key: getattr(args, flag) for flag, key in _KEYS.items() if getattr(args, flag)}
    if args.allow_private:
        out["allow_private"] = True
    return out


def handle(args: argparse.Namespace) -> int:
    if (args.tls_cert is None) != (args.tls_key is None):
        args.parser.error("--tls-cert and --tls-key go together")
    from probe.daemon import logs

    logs.setup()
    from probe.helper.settings import load_helper_file

    settings = load_helper_file(args.config, overrides(args))
    return run_async(_serve(settings))


async def _serve(settings: HelperFile) -> int:
    import asyncio
    import logging
    import signal

    from probe.daemon import sdnotify
    from probe.helper.server import serve_helper

    log = logging.getLogger("probe.helper")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await serve_helper(settings)
    cfg = settings.helper
    metrics = f" metrics=http://{cfg.metrics_listen}/metrics" if cfg.metrics_listen else ""
    log.info(
        "event=helper-started url=%s allow_private=%s token=%s%s",
        running.url,
        str(cfg.allow_private).lower(),
        "required" if cfg.token_file else "none",
        metrics,
    )
    if cfg.allow_private:
        log.warning("event=helper-allows-private-targets note=for_the_lab_only")
    sdnotify.ready()
    try:
        await stop.wait()
    finally:
        sdnotify.stopping()
        await running.close()
        log.info("event=helper-stopped")
    return EXIT_OK
