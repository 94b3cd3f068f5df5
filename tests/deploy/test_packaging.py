"""Packaging: the wheel's contents and metadata, the extras, and the image's pinned dependencies.

The wheel is built for real (setuptools from the ``test`` extra, no network: the build runs in
this environment) from a copy of the files the Docker build copies. The Docker build itself
cannot run here; its use of ``constraints.txt`` is checked statically.
"""

from __future__ import annotations

import email.parser
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
CONSTRAINTS = REPO / "constraints.txt"
DOCKERFILE = REPO / "Dockerfile"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def pins() -> dict[str, str]:
    """constraints.txt as name -> exact version (every non-comment line must be a pin)."""
    found: dict[str, str] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _PIN.match(line.strip())
        assert match, f"not an exact pin: {line!r}"
        found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def build_wheel(tmp_path: Path) -> zipfile.ZipFile:
    """Build mailwatch's wheel from what the Dockerfile copies, in ``tmp_path``."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "mailwatch", source / "mailwatch",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("mailwatch-*.whl")
    return zipfile.ZipFile(wheel)


def test_wheel_ships_typing_marker_data_and_license(tmp_path: Path) -> None:
    """py.typed, both TOML data files and LICENSE are in the wheel; metadata has the rest."""
    with build_wheel(tmp_path) as wheel:
        names = set(wheel.namelist())
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(wheel.read(metadata_name).decode())
    for data in ("py.typed", "config/alerts.toml", "core/taxonomy.toml"):
        assert f"mailwatch/{data}" in names, data
    # the C extensions, compiled from their sources (not a copied build), and their stubs
    for extension in ("_plain_headers", "_fetch_scan"):
        assert [n for n in names if n.startswith(f"mailwatch/parsing/{extension}.cpython-311")]
        assert f"mailwatch/parsing/{extension}.pyi" in names
    templates = Path(__file__).resolve().parents[2] / "mailwatch" / "web" / "templates"
    for template in sorted(templates.iterdir()):  # the status page's templates and style
        assert f"mailwatch/web/templates/{template.name}" in names, template.name
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert metadata["License-Expression"] == "MIT"
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert not [c for c in classifiers if c.startswith("License ::")]  # PEP 639: the expression
    assert set(metadata.get_all("Provides-Extra") or []) == {"test", "dev"}


def test_license_file_is_mit_for_the_contributors() -> None:
    """LICENSE is the MIT licence, copyright the mailwatch contributors."""
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Copyright (c) mailwatch contributors" in text
    assert PYPROJECT["project"]["license"] == "MIT"


def test_development_tools_are_their_own_extra() -> None:
    """Linters and type checkers are in ``dev``, not in ``test`` or the runtime dependencies."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    named = {key: {canonicalize_name(Requirement(r).name) for r in reqs}
             for key, reqs in extras.items()}  # fmt: skip
    runtime = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    tools = {"ruff", "mypy", "types-pyyaml", "types-jsonschema"}
    assert tools <= named["dev"]
    assert not tools & (named["test"] | runtime)
    bootstrap = (REPO / "scripts" / "bootstrap").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test,dev]'" in bootstrap  # scripts/test runs ruff and mypy


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    """constraints.txt pins each runtime dependency (and nothing of the extras) exactly."""
    pinned = pins()
    for line in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (name, line)
    for tool in ("pytest", "ruff", "mypy", "hypothesis"):
        assert tool not in pinned, tool


def test_docker_build_installs_with_the_constraints() -> None:
    """The builder copies constraints.txt and pip wheel uses it."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    copy = re.search(r"^COPY (.*) \./$", text, re.M)
    assert copy
    assert "constraints.txt" in copy.group(1).split()
    assert "LICENSE" in copy.group(1).split()  # pyproject's license-files
    wheel = re.search(r"^RUN pip wheel (.*?)\\$", text, re.M)
    assert wheel
    assert "--constraint constraints.txt" in wheel.group(1)
