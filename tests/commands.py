"""Running `prism` as a user would: a subprocess with an environment of its own."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import MINILM, WHISPER_TINY
from tests.servers import free_port


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any PRISM_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRISM_")}
    env.update(values)
    return env


def minilm_env(data_dir, **overrides: str) -> dict[str, str]:
    """MiniLM and Whisper tiny.en from pip packages, data under `data_dir`, and a port where no server
    answers, so that the CLI runs the app in-process."""
    values = dict(
        PRISM_DATA_DIR=str(data_dir),
        PRISM_TEXT_BACKEND="sentence-transformers",
        PRISM_TEXT_MODEL=MINILM,
        PRISM_WHISPER_MODEL=WHISPER_TINY,
        PRISM_PORT=str(free_port()),
        PRISM_LOG_LEVEL="WARNING",
    )
    values.update(overrides)
    return clean_env(**values)


def prism(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=env, timeout=timeout)
