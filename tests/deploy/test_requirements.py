"""requirements.txt declares what backend/ and model/ import, and nothing they do not; constraints.txt pins
every one of them (and what they pull in) at a version requirements.txt allows."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTION_OF_MODULE = {"PIL": "pillow"}  # where the import name is not the distribution's name
PROVIDED_BY_FASTAPI = {"starlette", "pydantic"}  # its public API, pinned by fastapi itself
BASE_IMAGE_PACKAGES = {"torch", "torchvision"}  # the image's base (pytorch/pytorch) carries them


def third_party_imports() -> set[str]:
    roots = set()
    for path in [*(ROOT / "backend").rglob("*.py"), *(ROOT / "model").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return {r for r in roots if r not in sys.stdlib_module_names and r not in ("backend", "model")}


def declared() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)", line.strip()):
            names.add(match.group(1).lower().replace("_", "-"))
    return names


def test_every_runtime_import_is_declared_and_every_declaration_is_imported() -> None:
    needed = {DISTRIBUTION_OF_MODULE.get(m, m).lower().replace("_", "-") for m in third_party_imports()}
    assert needed - PROVIDED_BY_FASTAPI - declared() == set()
    assert declared() - needed == set()


def test_constraints_pin_every_requirement_at_a_version_it_allows() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line.split("#")[0].strip())
        name = canonicalize_name(requirement.name)
        if name in BASE_IMAGE_PACKAGES:
            assert name not in pins, f"{name} comes with the base image: constraints.txt must not pin it"
            continue
        assert name in pins, f"{name} is not pinned in constraints.txt (run scripts/constraints.sh)"
        assert pins[name] in requirement.specifier, f"constraints.txt pins {name}=={pins[name]}, outside {requirement}"
