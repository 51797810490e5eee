"""Configuration from the environment and from a TOML file."""

from pathlib import Path

import pytest

from api.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("PRISM_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no prism.toml from the developer's working directory


def test_embedded_defaults():
    settings = Settings()
    assert settings.text_backend == "local"
    assert settings.text_model == "Qwen/Qwen3-Embedding-0.6B"
    assert settings.store_uri == str(Path("data") / "milvus.db")
    assert settings.api_key_list == []


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("PRISM_MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("PRISM_TEXT_BACKEND", "openai")
    monkeypatch.setenv("PRISM_TEXT_DIMENSIONS", "256")
    monkeypatch.setenv("PRISM_API_KEYS", "a, b ,,c")
    settings = Settings()
    assert settings.store_uri == "http://milvus:19530"
    assert settings.text_encoder_config().backend == "openai"
    assert settings.text_encoder_config().dimensions == 256
    assert settings.api_key_list == ["a", "b", "c"]


def test_toml_file_with_environment_taking_precedence(monkeypatch, tmp_path):
    (tmp_path / "prism.toml").write_text('data_dir = "/srv/prism"\nchunk_tokens = 256\ntext_model = "from-file"\n')
    monkeypatch.setenv("PRISM_TEXT_MODEL", "from-env")
    settings = Settings()
    assert settings.data_dir == Path("/srv/prism") and settings.chunk_tokens == 256
    assert settings.text_model == "from-env"


def test_config_file_named_in_environment_must_exist(monkeypatch, tmp_path):
    monkeypatch.setenv("PRISM_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        Settings()


def test_public_view_masks_secrets(monkeypatch):
    monkeypatch.setenv("PRISM_API_KEYS", "very-secret")
    monkeypatch.setenv("PRISM_OPENAI_API_KEY", "sk-also-secret")
    view = Settings().public_view()
    assert view["api_keys"] == "***" and view["openai_api_key"] == "***"
    assert "very-secret" not in str(view) and "sk-also-secret" not in str(view)
    assert view["milvus_token"] is None


def test_empty_fallback_disables_it(monkeypatch):
    monkeypatch.setenv("PRISM_TEXT_FALLBACK_MODEL", "")
    assert Settings().text_encoder_config().fallback_model is None


def test_cpu_threads_must_be_positive_and_empty_means_unset(monkeypatch):
    monkeypatch.setenv("PRISM_CPU_THREADS", "")
    assert Settings().cpu_threads is None
    monkeypatch.setenv("PRISM_CPU_THREADS", "0")
    with pytest.raises(ValueError, match="cpu_threads"):
        Settings()


# In a subprocess: the thread count is process-wide, and the test process should keep its own.
THREADS_AFTER_OPEN = """
import torch
from api.settings import Settings
from api.state import open_library

library = open_library(Settings())
print(torch.get_num_threads(), flush=True)
library.close()
"""


def test_cpu_threads_reach_the_in_process_models(tmp_path):
    import subprocess
    import sys

    from tests.commands import minilm_env

    env = minilm_env(tmp_path / "data", PRISM_IMAGE_MODEL="", PRISM_RERANK_BACKEND="none", PRISM_CPU_THREADS="1")
    result = subprocess.run([sys.executable, "-c", THREADS_AFTER_OPEN], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"
