"""Read the deployment files the way Docker would: Dockerfile instructions, compose YAML, .env.example.

And the way Label Studio would: :func:`label_studio_database` asks the pinned Label Studio's
own settings code which database an environment selects.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from devtools.label_studio import ensure_venv

ROOT = Path(__file__).resolve().parents[2]
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")
# Loads Label Studio's settings module as `label-studio start` does (label_studio/server.py) and
# prints the database Django would connect to; importing the settings connects to nothing.
_IMPORT_LABEL_STUDIO = """
import json, os, sys
import label_studio
sys.path.insert(0, os.path.dirname(label_studio.__file__))
"""
_PRINT_DATABASE = (
    _IMPORT_LABEL_STUDIO
    + """
from django.conf import settings
print(json.dumps(settings.DATABASES["default"]))
"""
)
# validate_ip is what Label Studio runs before it calls an ML backend, a webhook or an import URL.
_PRINT_REFUSED = (
    _IMPORT_LABEL_STUDIO
    + """
import django
django.setup()
from core.utils.io import validate_ip
refused = {}
for address in sys.argv[1:]:
    try:
        validate_ip(address)
        refused[address] = False
    except Exception:
        refused[address] = True
print(json.dumps(refused))
"""
)


def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or (stripped.startswith("#") and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def dockerfile_values(keyword: str) -> list[str]:
    return [arguments for name, arguments in dockerfile_instructions() if name == keyword]


def exec_form(arguments: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD in JSON (exec) form."""
    value = json.loads(arguments)
    assert isinstance(value, list) and all(isinstance(part, str) for part in value), arguments
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in dockerfile_values("ENV"):
        for pair in arguments.split():
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text()))


def interpolated_names(text: str) -> set[str]:
    """Variables a compose file takes from the environment or .env: ${NAME}, ${NAME:-x}, ${NAME:?x}."""
    return set(INTERPOLATION.findall(text))


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def resolve(value: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ${NAME}, ${NAME:-default} (unset or empty), ${NAME:?error} (must be set)."""

    def substitute(match: re.Match[str]) -> str:
        name, operator, argument = match.group(1), match.group(2) or "", match.group(3) or ""
        current = variables.get(name, "")
        if operator == ":-":
            return current or argument
        if operator == ":?" and not current:
            raise ValueError(f"{name}: {argument}")
        return current

    return re.sub(r"\$\{([A-Z0-9_]+)(:[-?])?([^}]*)\}", substitute, value)


def label_studio_database(environment: dict[str, str], scratch: Path) -> dict[str, Any]:
    """``settings.DATABASES["default"]`` of the pinned Label Studio, started with only ``environment``.

    ``scratch`` takes the folders its settings create on import.
    """
    return dict(json.loads(_run_in_label_studio(_PRINT_DATABASE, [], environment, scratch)))


def label_studio_refuses(environment: dict[str, str], addresses: list[str], scratch: Path) -> dict[str, bool]:
    """Whether the pinned Label Studio, started with ``environment``, refuses to call each address."""
    return dict(json.loads(_run_in_label_studio(_PRINT_REFUSED, addresses, environment, scratch)))


def _run_in_label_studio(script: str, arguments: list[str], environment: dict[str, str], scratch: Path) -> str:
    """The last line a script prints when run by the Label Studio virtualenv's Python."""
    python = ensure_venv().parent / "python"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(scratch),
        "LABEL_STUDIO_BASE_DATA_DIR": str(scratch / "data"),
        "XDG_CONFIG_HOME": str(scratch / "config"),
        "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",  # what label-studio and its image use
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        **environment,
    }
    completed = subprocess.run(
        [str(python), "-c", script, *arguments], env=env, cwd=scratch, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout.strip().splitlines()[-1]
