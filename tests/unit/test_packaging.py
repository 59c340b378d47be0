"""The wheel carries every package, the data files and the Alembic history."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def test_every_package_under_probe_is_listed() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(path.parent.relative_to(ROOT).parts)
        for path in (ROOT / "probe").rglob("__init__.py")
        if "__pycache__" not in path.parts
    }
    assert found <= listed, f"add to pyproject.toml [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.timeout(300)
def test_the_wheel_ships_migrations_and_data(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("curfew-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "probe/migrations/env.py",
        "probe/migrations/script.py.mako",
        "probe/migrations/versions/0001_initial.py",
        "probe/data/fingerprints.yaml",
        "probe/lab/scenarios/kazakhstan-2019.yaml",
    ):
        assert required in names
