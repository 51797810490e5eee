"""Property-based fuzzing of every route in /openapi.json against a real server (schemathesis).

Whatever schemathesis sends, valid under the schema or not, the server must never answer 5xx, and
every answer must be one the schema documents for that route: its status code, its content type
and its body. Every modality is loaded (a tiny CLIP trained in the session, Whisper tiny.en, MiniLM),
so picture and audio routes run their real decoders on what is generated. Deterministic: hypothesis
derandomized, a bounded number of examples per operation, no example database.
"""

from __future__ import annotations

import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from api.app import create_app
from tests.conftest import minilm_settings
from tests.servers import free_port, prism_server

EXAMPLES_PER_OPERATION = 50
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_url(tmp_path_factory, tiny_clip_dir):
    # Answers from a chat server address where nothing listens: the fuzzer never waits on a model, and the
    # answer routes still run for real (validation, retrieval, "nothing found", 503 naming the server).
    answers = dict(answer_backend="openai", answer_url=f"http://127.0.0.1:{free_port()}/v1", answer_max_retries=0)
    with prism_server(minilm_settings(tmp_path_factory.mktemp("fuzz"), image_model=f"local-dir:{tiny_clip_dir}", **answers)) as url:
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
