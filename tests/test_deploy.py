"""The deployment files stay true to the code: docker-compose.yml and its override files,
.env.example, deploy/Dockerfile and .dockerignore.

These machines have no container engine, so nothing here starts a container: the files are parsed
(YAML, Dockerfile lines) and checked against what Prism really reads (api.settings.Settings), against
each other (ports, service names, models) and against the repository (paths the image copies).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BASE_COMPOSE = ROOT / "docker-compose.yml"
CPU_COMPOSE = ROOT / "deploy" / "compose.cpu.yml"
GPU_MODELS_COMPOSE = ROOT / "deploy" / "compose.gpu-models.yml"
COMPOSE_FILES = (BASE_COMPOSE, CPU_COMPOSE, GPU_MODELS_COMPOSE)
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY_README = ROOT / "deploy" / "README.md"

SETTINGS_VARIABLES = {f"PRISM_{name.upper()}" for name in Settings.model_fields}
PRISM_VARIABLE = re.compile(r"\bPRISM_[A-Z0-9_]+\b")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)
SGLANG_SERVICES = ("embedder", "reranker")


# --------------------------------------------------------------------------- loading


class Override(dict):
    """A mapping written with Compose's `!override` merge tag: it replaces, never merges."""


class Reset:
    """A value written with Compose's `!reset` merge tag: it removes the attribute."""


class ComposeLoader(yaml.SafeLoader):
    pass


def _construct_override(loader: ComposeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


ComposeLoader.add_constructor("!override", _construct_override)
ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())


def load_compose(path: Path) -> dict[str, Any]:
    document = yaml.load(path.read_text(), Loader=ComposeLoader)
    assert isinstance(document, dict) and isinstance(document.get("services"), dict), f"{path.name}: no services"
    return document


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return load_compose(BASE_COMPOSE)


@pytest.fixture(scope="module")
def services(base: dict[str, Any]) -> dict[str, Any]:
    return base["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, written as a mapping or as a list of NAME=value."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {name: "" if value is None else str(value) for name, value in raw.items()}


def option(command: list[str], flag: str) -> str:
    """The value after `flag` in an exec-form command."""
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


# --------------------------------------------------------------------------- compose: images, settings


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.name)
def test_every_image_tag_is_pinned(path: Path):
    for name, service in load_compose(path)["services"].items():
        if "image" not in service:
            continue
        image = service["image"]
        assert "$" not in image, f"{path.name}: {name} takes its image from a variable: {image}"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{path.name}: {name} has no tag: {image}"
        assert tag != "latest", f"{path.name}: {name} uses :latest"


def test_every_prism_variable_is_a_setting():
    """A PRISM_ name Prism does not read would be silently ignored: catch typos and stale names."""
    for path in (*COMPOSE_FILES, ENV_EXAMPLE, DOCKERFILE, DEPLOY_README):
        unknown = set(PRISM_VARIABLE.findall(path.read_text())) - SETTINGS_VARIABLES
        assert not unknown, f"{path.relative_to(ROOT)} names settings Prism does not have: {sorted(unknown)}"


def test_every_interpolated_variable_is_in_env_example():
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))
    for path in COMPOSE_FILES:
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        missing = set(INTERPOLATION.findall(text)) - documented
        assert not missing, f"{path.relative_to(ROOT)} uses variables .env.example does not list: {sorted(missing)}"


# --------------------------------------------------------------------------- compose: the base stack


def test_base_stack_has_the_services_of_the_product(services: dict[str, Any]):
    assert {"embedder", "reranker", "etcd", "minio", "milvus", "api"} <= set(services)


def test_every_service_has_a_healthcheck(services: dict[str, Any]):
    for name, service in services.items():
        test = (service.get("healthcheck") or {}).get("test")
        assert test and not service["healthcheck"].get("disable"), f"{name} has no health check"


def test_api_waits_for_healthy_dependencies(services: dict[str, Any]):
    depends_on = services["api"]["depends_on"]
    for dependency in ("embedder", "milvus"):
        assert depends_on[dependency]["condition"] == "service_healthy", dependency
    for dependency in ("etcd", "minio"):
        assert services["milvus"]["depends_on"][dependency]["condition"] == "service_healthy", dependency


def test_api_healthcheck_asks_readyz_without_curl(services: dict[str, Any]):
    test = " ".join(services["api"]["healthcheck"]["test"])
    assert "/readyz" in test
    assert "curl" not in test and "python" in test  # the slim Python image has no curl


def test_sglang_services_reserve_a_gpu(services: dict[str, Any]):
    for name in SGLANG_SERVICES:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), name


def test_sglang_images_are_the_official_ones(services: dict[str, Any]):
    for name in SGLANG_SERVICES:
        assert services[name]["image"].startswith("lmsysorg/sglang:v"), name


def test_embedder_serves_qwen3_embedding_4b_with_matryoshka(services: dict[str, Any]):
    embedder = services["embedder"]
    command = embedder["command"]
    assert option(command, "--model-path") == "Qwen/Qwen3-Embedding-4B"
    assert "--is-embedding" in command
    assert json.loads(option(command, "--json-model-override-args")) == {"is_matryoshka": True}
    port = option(command, "--port")
    assert f"localhost:{port}/health" in " ".join(embedder["healthcheck"]["test"])
    assert any(volume.endswith(":/root/.cache/huggingface") for volume in embedder["volumes"]), "no model cache volume"


def test_reranker_is_launched_as_sglang_documents_qwen3_reranker(services: dict[str, Any]):
    reranker = services["reranker"]
    command = reranker["command"]
    assert option(command, "--model-path") == "Qwen/Qwen3-Reranker-4B"
    # A decoder-only yes/no reranker: its chat template, and never --is-embedding.
    assert option(command, "--chat-template").endswith("examples/chat_template/qwen3_reranker.jinja")
    assert "--is-embedding" not in command
    assert {"--trust-remote-code", "--disable-radix-cache"} <= set(command)
    assert f"localhost:{option(command, '--port')}/health" in " ".join(reranker["healthcheck"]["test"])


def test_api_is_wired_to_the_other_services(services: dict[str, Any]):
    api = services["api"]
    env = environment(api)
    assert env["PRISM_HOST"] == "0.0.0.0"
    assert env["PRISM_TEXT_BACKEND"] == "openai"
    embedder_command = services["embedder"]["command"]
    assert env["PRISM_TEXT_MODEL"] == option(embedder_command, "--model-path")  # SGLang's served name

    base_url = urlparse(env["PRISM_OPENAI_BASE_URL"])
    assert (base_url.hostname, str(base_url.port), base_url.path) == ("embedder", option(embedder_command, "--port"), "/v1")
    reranker_command = services["reranker"]["command"]
    rerank_url = urlparse(env["PRISM_RERANK_URL"])
    assert (rerank_url.hostname, str(rerank_url.port), rerank_url.path) == ("reranker", option(reranker_command, "--port"), "/v1")
    assert env["PRISM_RERANK_MODEL"] == option(reranker_command, "--model-path")
    assert api["depends_on"]["reranker"]["condition"] == "service_healthy"
    milvus = urlparse(env["PRISM_MILVUS_URI"])
    assert (milvus.hostname, milvus.port) == ("milvus", 19530)

    # The blob store lives under PRISM_DATA_DIR: it must be a volume, not the container's layer.
    mounts = {volume.split(":")[1] for volume in api["volumes"]}
    assert env["PRISM_DATA_DIR"] in mounts
    assert api["build"]["dockerfile"] == "deploy/Dockerfile" and (ROOT / api["build"]["context"] / "deploy/Dockerfile").is_file()


def test_named_volumes_are_declared(base: dict[str, Any], services: dict[str, Any]):
    declared = set(base.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "$")):
                assert source in declared, f"{name}: volume {source} is not declared"


# --------------------------------------------------------------------------- secrets


def _environments(path: Path) -> list[tuple[str, dict[str, str]]]:
    return [(name, environment(service)) for name, service in load_compose(path)["services"].items()]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda path: path.name)
def test_no_secret_is_written_in_a_compose_file(path: Path):
    for service, env in _environments(path):
        assert "PRISM_API_KEYS" not in env, f"{service}: API keys belong in .env, not in {path.name}"
        for name, value in env.items():
            if SECRET_NAME.search(name):
                assert value == "" or re.fullmatch(r"\$\{[^}]+\}", value), f"{service}: {name} is written inline"


def test_api_reads_its_secrets_from_the_env_file(services: dict[str, Any]):
    env_file = services["api"]["env_file"]
    paths = [env_file] if isinstance(env_file, str) else [e if isinstance(e, str) else e["path"] for e in env_file]
    assert ".env" in paths
    assert re.search(r"^PRISM_API_KEYS=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE), ".env.example must show the keys"


def test_env_file_is_git_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "-q", ".env"], cwd=ROOT).returncode == 0
    assert ignored, ".env holds the deployment's secrets: add it to .gitignore"
    example = subprocess.run(["git", "check-ignore", "--no-index", "-q", ".env.example"], cwd=ROOT).returncode == 0
    assert not example, ".env.example must be committed"


# --------------------------------------------------------------------------- override files


def test_cpu_override_drops_sglang_and_embeds_in_process():
    overrides = load_compose(CPU_COMPOSE)["services"]
    for name in SGLANG_SERVICES:
        assert overrides[name].get("profiles"), f"{name} still starts on a CPU-only host"
    depends_on = overrides["api"]["depends_on"]
    # Without !override Compose merges mappings, and the API would still wait for the embedder.
    assert isinstance(depends_on, Override), "api.depends_on must replace the base file's (!override)"
    assert set(depends_on) == {"milvus"} and depends_on["milvus"]["condition"] == "service_healthy"
    env = environment(overrides["api"])
    assert env["PRISM_TEXT_BACKEND"] == "local"
    assert "deploy" not in overrides["api"], "no GPU reservation on a CPU-only host"


def test_gpu_models_override_puts_clip_and_whisper_on_the_gpu():
    api = load_compose(GPU_MODELS_COMPOSE)["services"]["api"]
    env = environment(api)
    assert env["PRISM_WHISPER_DEVICE"] == "cuda" and env["PRISM_IMAGE_DEVICE"] == "cuda"
    devices = api["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device.get("capabilities", []) for device in devices)
    # CUDA torch in the image: the build argument must be one the Dockerfile declares.
    for argument in api["build"]["args"]:
        assert argument in dockerfile_args(), f"deploy/Dockerfile has no ARG {argument}"


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = full.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return instructions


def dockerfile_args() -> dict[str, str]:
    args = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            args.setdefault(name.strip(), default.strip())
    return args


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each build stage, FROM first."""
    result: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_dockerfile_is_multi_stage_on_pinned_images():
    all_stages = stages()
    assert len(all_stages) >= 2
    args = dockerfile_args()
    names = set()
    for stage in all_stages:
        words = [word for word in stage[0][1].split() if not word.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda match: args.get(match.group(1), match.group(0)), words[0])
        if image not in names:  # FROM another stage needs no tag
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest" and "$" not in tag, f"unpinned base image {words[0]} -> {image}"
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])


def test_final_stage_runs_unprivileged_with_only_the_venv():
    final = stages()[-1]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users, "the final stage has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    copies = [arguments for keyword, arguments in final if keyword == "COPY"]
    assert copies and all(arguments.startswith("--from=") for arguments in copies), "the final stage copies sources"


def test_dockerfile_healthcheck_cmd_and_host():
    instructions = dockerfile_instructions()
    healthchecks = [arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK"]
    assert healthchecks and "/readyz" in healthchecks[-1] and "python" in healthchecks[-1]
    cmd = [arguments for keyword, arguments in instructions if keyword == "CMD"][-1]
    assert json.loads(cmd) == ["prism", "serve"]
    env = " ".join(arguments for keyword, arguments in stages()[-1] if keyword == "ENV")
    assert re.search(r"\bPRISM_HOST=0\.0\.0\.0\b", env), "inside a container Prism must bind all interfaces"


def test_dockerfile_installs_with_the_constraints_file():
    runs = " ".join(arguments for keyword, arguments in stages()[0] if keyword == "RUN")
    assert re.search(r"pip install .*-c \.ci/constraints\.txt", runs), "torch must stay pinned (.ci/constraints.txt)"


def copy_sources() -> list[str]:
    sources = []
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or "--from=" in arguments:
            continue
        words = json.loads(arguments) if arguments.startswith("[") else arguments.split()
        sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_every_copy_source_exists():
    sources = copy_sources()
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such path in the repository"


# --------------------------------------------------------------------------- .dockerignore


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore syntax: Go filepath.Match, plus `**` for any number of directories."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def in_build_context(path: str) -> bool:
    """Whether `path` (relative to the root) is sent to the builder: the last pattern that matches
    the path or one of its parent directories decides, `!` patterns re-include."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _ignore_regex(line.lstrip("!").strip("/"))))
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.match(candidate) for candidate in candidates):
            included = negated
    return included


def test_dockerignore_keeps_what_the_image_copies():
    for source in copy_sources():
        path = ROOT / source
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            assert in_build_context(relative), f"{relative} is copied by deploy/Dockerfile but excluded by .dockerignore"


def test_dockerignore_keeps_secrets_and_local_state_out():
    for path in (".env", ".venv/bin/python", "data/milvus.db", ".git/config", "api/__pycache__/app.cpython-311.pyc"):
        assert not in_build_context(path), f"{path} would be sent to the image builder"
