"""What `curfew check` verifies beyond the file itself: that this machine can run it.

`load_config` checks types, bounds, URLs and the CA bundle, which hold wherever the file is
read (and on every SIGHUP). Here, before a start (`curfew check`, and `curfew run` itself): the
directories the daemon will write exist or can be created and are writable, each vantage's
source address is one of this machine's, and the metrics address can be bound.

The metrics port of a daemon that is already running on this config's data_dir is in use by
that daemon: binding it fails, which is then a note (the port is the daemon's own), not an
error. Any other process on the port is an error, as `run` would fail there.
"""

from __future__ import annotations

import errno
import os
import ssl
import tempfile
from pathlib import Path

from probe.config import Config, ConfigError
from probe.daemon import lock
from probe.metrics.server import listen_problem
from probe.values import path_kind
from probe.vantage import source_address_problem, tls_contexts


def preflight(config: Config, source: str) -> list[str]:
    """Raise ConfigError naming `source` and the key for what `run` would fail on; return notes."""
    notes: list[str] = []
    if config.tls.ca_bundle is not None:
        try:
            tls_contexts(config.tls.ca_bundle)  # what every vantage's TLS will be built from
        except (ssl.SSLError, OSError):
            raise ConfigError(
                f"{source}: tls.ca_bundle: {config.tls.ca_bundle}: no PEM certificate that loads"
            ) from None
    if config.database is not None:
        _database(config.database, f"{source}: database")
    _writable_dir(config.data_dir, f"{source}: data_dir")
    spool = config.data_dir / "spool"
    if _kind(spool, f"{source}: data_dir") not in ("directory", "missing"):
        raise ConfigError(f"{source}: data_dir: {spool} (the spool) is not a directory")
    sqlite_file = _sqlite_file(config.database_url)
    if sqlite_file is not None:
        key = "database" if config.database else "data_dir"
        _writable_dir(sqlite_file.parent, f"{source}: {key}")
        kind = _kind(sqlite_file, f"{source}: {key}")
        if kind != "missing" and not (kind == "file" and os.access(sqlite_file, os.R_OK | os.W_OK)):
            raise ConfigError(f"{source}: {key}: {sqlite_file} is not a file this user can write")
    for index, vantage in enumerate(config.vantages):
        if vantage.source_address is not None:
            failed = source_address_problem(vantage.source_address)
            if failed is not None:  # every probe from this vantage would fail to bind
                raise ConfigError(
                    f"{source}: vantages[{index}].source_address: cannot bind "
                    f"{vantage.source_address}: {failed.strerror}"
                )
    host, port = config.metrics.host_port
    problem = listen_problem(host, port)
    if problem is not None:
        pid = lock.holder(config.data_dir) if problem.errno == errno.EADDRINUSE else None
        if pid is None:
            listen = config.metrics.listen
            raise ConfigError(f"{source}: metrics.listen: cannot listen on {listen}: {problem.strerror}")
        notes.append(
            f"metrics.listen {config.metrics.listen} is in use by the curfew running on this data_dir "
            f"(pid {pid or '?'}): not checked"
        )
    return notes


def _database(url: str, where: str) -> None:
    """The URL as the store will parse it (the config's own check is a copy of the pattern)."""
    from sqlalchemy.engine import make_url

    try:
        make_url(url).port  # noqa: B018 - parsing it is the check
    except Exception:  # neither the message nor the URL is worth quoting: it holds the password
        raise ConfigError(f"{where}: expected sqlite:///path or postgresql://user:password@host/db") from None


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser()


def _writable_dir(path: Path, where: str) -> None:
    """`path` is a writable directory, or the nearest existing ancestor is one (it will be created)."""
    existing = path
    while _kind(existing, where) == "missing" and existing.parent != existing:
        existing = existing.parent
    if _kind(existing, where) != "directory":
        raise ConfigError(f"{where}: {existing} is not a directory")
    # Try it rather than ask os.access: root passes every access check, yet cannot write to a
    # read-only mount or create a directory in /proc.
    try:
        fd, name = tempfile.mkstemp(dir=existing, prefix=".curfew-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        verb = "write to" if existing == path else f"create {path} in"
        raise ConfigError(f"{where}: cannot {verb} {existing}: {exc.strerror}") from None


def _kind(path: Path, where: str) -> str:
    try:
        return path_kind(path)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
