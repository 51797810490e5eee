"""A server with every modality and an API key, shared by the client, retriever and generated-client
tests: MiniLM, Whisper tiny.en, the tiny CLIP trained for the session, and recordings longer than
one second become background jobs (so clients poll them)."""

from __future__ import annotations

import pytest

from tests.conftest import minilm_settings
from tests.servers import prism_server

API_KEY = "client-test-key"


@pytest.fixture(scope="session")
def full_prism_url(tmp_path_factory, tiny_clip_dir) -> str:
    settings = minilm_settings(
        tmp_path_factory.mktemp("prism-full"),
        image_model=f"local-dir:{tiny_clip_dir}",
        api_keys=API_KEY,
        audio_job_threshold_s=1.0,
    )
    with prism_server(settings) as url:
        yield url
