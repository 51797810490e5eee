"""The `prism` command, run as a user would: against a server, and directly on the store without one."""

import json
import subprocess
import sys

import pytest

from tests.audio_files import speak
from tests.commands import clean_env, minilm_env, prism
from tests.files import make_pdf
from tests.tiny_clip import make_shape_image


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


def test_help_lists_the_commands():
    result = prism("--help")
    assert result.returncode == 0
    for command in ("serve", "ingest", "search", "collections", "delete", "info"):
        assert command in result.stdout


def test_direct_mode_without_a_server(library_folder, direct_env):
    result = prism("ingest", str(library_folder), "--collection", "lib", env=direct_env)
    assert result.returncode == 0, result.stderr
    assert "ingested 5 of 5 files" in result.stdout
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


def test_commands_against_a_running_server(prism_url, library_folder, collection):
    env = clean_env()
    url = ["--url", prism_url]
    result = prism(*url, "ingest", str(library_folder / "sub"), "--collection", collection, env=env)
    assert result.returncode == 0, result.stderr
    assert "ingested 3 of 3 files" in result.stdout and "directly" not in result.stderr

    result = prism(*url, "search", "tail of a comet", "--collection", collection, "--top-k", "1", env=env)
    assert result.returncode == 0 and "comets.pdf" in result.stdout

    result = prism(*url, "collections", env=env)
    assert f"{collection}\t3 items" in result.stdout

    result = prism(*url, "delete", "--document", "bikes.md", "--collection", collection, env=env)
    assert result.returncode == 0 and "deleted 1" in result.stdout

    result = prism(*url, "info", env=env)
    info = json.loads(result.stdout)
    assert info["server"]["models"]["text"]["dimension"] == 384
    assert "configuration" in info and info["configuration"]["api_keys"] is None

    bad = library_folder / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 nope")
    result = prism(*url, "ingest", str(bad), "--collection", collection, env=env)
    assert result.returncode == 1 and "not a readable PDF" in result.stderr


def test_serve_starts_a_server_that_becomes_ready(direct_env):
    import httpx

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
