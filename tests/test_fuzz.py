"""Property-based fuzzing of every route in /openapi.json against a real server (schemathesis).

Whatever schemathesis sends, valid under the schema or not, the server must never answer 5xx, and
every answer must be one the schema documents for that route: its status code, its content type
and its body. Every modality is loaded (a tiny CLIP trained in the session, Whisper tiny.en, MiniLM),
so picture and audio routes run their real decoders on what is generated. Deterministic: hypothesis
derandomized, a bounded number of examples per operation, no example database.
"""

from __future__ import annotations

import tempfile

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from api.app import create_app
from tests.conftest import minilm_settings
from tests.servers import prism_server

EXAMPLES_PER_OPERATION = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory, tiny_clip_dir):
    # Answers from the offline SmolLM2 (the fallback of a model that is not to be had), at most 2 tokens
    # long, so the fuzzer never waits long on the model (which loads once, on the first answer).
    answers = dict(answer_model="prism-tests/not-a-cached-model", answer_max_tokens=2)
    with prism_server(minilm_settings(tmp_path_factory.mktemp("fuzz"), image_model=f"local-dir:{tiny_clip_dir}", **answers)) as url:
        warm_up = {"query": {"text": "owls"}, "collection": "fuzz-warm-up", "min_score": -1}
        httpx.post(f"{url}/v1/documents", json={"collection": "fuzz-warm-up", "documents": [{"text": "Owls hunt at night."}]}, timeout=120)
        assert httpx.post(f"{url}/v1/answer", json=warm_up, timeout=900).status_code == 200  # the model loads here
        yield url


# The document the server publishes, generated from its routes (no model loads for that): one test
# per operation.
schema = schemathesis.openapi.from_dict(create_app(minilm_settings(tempfile.mkdtemp(prefix="prism-fuzz-"))).openapi())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_as_documented(case, fuzz_url):
    case.call_and_validate(base_url=fuzz_url, checks=CHECKS, timeout=120)
