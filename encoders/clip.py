"""CLIP image and text embeddings in one vector space, with open_clip.

The model is named the way open_clip names it: an architecture (`ViT-B-32`) with a pretrained tag
(`laion2b_s34b_b79k`) or a checkpoint file, an `hf-hub:org/repo` id, or `local-dir:/path` (a directory
holding `open_clip_config.json` and the weights). Whatever it is, the weights are found before open_clip
is called, so that missing weights fail at once with ModelNotFound saying how to provide them: open_clip
itself would retry the hub for a while, and for `local-dir:` without weights would only log a warning and
go on with random ones.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from encoders.base import ModelNotFound, l2_normalize, resolve_device
from encoders.cancel import check_cancelled
from encoders.hub import hub_offline

HF_HUB_PREFIX = "hf-hub:"
LOCAL_DIR_PREFIX = "local-dir:"

# Weight file names open_clip looks for in a `local-dir:` directory (open_clip.factory._find_checkpoint_in_dir).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth")
# What to take from an `hf-hub:` repository: config, tokenizer files, and one copy of the weights.
HUB_CONFIG_FILES = ["*.json", "*.txt", "*.model"]
HUB_WEIGHT_FILES = ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"]

HOW_TO_PROVIDE = (
    "Provide the weights with PRISM_IMAGE_MODEL=local-dir:/path (a directory with open_clip_config.json "
    "and the weights) or PRISM_IMAGE_PRETRAINED=/path/to/checkpoint (a checkpoint file for the architecture), "
    "or allow downloads from the Hugging Face hub (unset HF_HUB_OFFLINE)."
)


@dataclass(frozen=True)
class ClipConfig:
    model: str = "ViT-B-32"  # open_clip architecture name, `hf-hub:org/repo`, or `local-dir:/path`
    pretrained: str | None = "laion2b_s34b_b79k"  # pretrained tag or checkpoint file; ignored with a prefix
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    batch_size: int = 32


@dataclass(frozen=True)
class ClipInfo:
    name: str  # the model as configured
    pretrained: str | None  # the tag or checkpoint file; None for `hf-hub:` and `local-dir:`
    dimension: int  # length of image and text vectors alike


@dataclass(frozen=True)
class _Resolved:
    """What to hand open_clip once the weights are known to be on disk."""

    model_name: str
    pretrained: str | None
    options: dict  # preprocessing of a pretrained tag, which passing its file instead of the tag loses


def _open_clip():
    from encoders.torchvision_fix import ensure_torchvision_importable

    ensure_torchvision_importable()  # before open_clip imports torchvision
    import open_clip

    return open_clip


def _missing(what: str, why: str) -> ModelNotFound:
    return ModelNotFound(f"CLIP weights {what} are missing: {why}. {HOW_TO_PROVIDE}")


def _local_dir(model: str) -> _Resolved:
    directory = Path(model[len(LOCAL_DIR_PREFIX):]).expanduser()
    if not (directory / "open_clip_config.json").is_file():
        raise _missing(f"for {model!r}", f"{directory} has no open_clip_config.json")
    if not any(path.suffix in WEIGHT_SUFFIXES for path in directory.iterdir()):
        raise _missing(f"for {model!r}", f"{directory} has no *.safetensors, *.bin or *.pth file")
    return _Resolved(f"{LOCAL_DIR_PREFIX}{directory}", None, {})


def _hub_repo(model: str) -> _Resolved:
    """An `hf-hub:` model becomes the local directory of its snapshot (cache first, download unless offline)."""
    from huggingface_hub import snapshot_download

    repo = model[len(HF_HUB_PREFIX):]
    offline = hub_offline()
    # One weights file is enough; try them in open_clip's order of preference.
    for weights in HUB_WEIGHT_FILES:
        try:
            directory = snapshot_download(repo, allow_patterns=HUB_CONFIG_FILES + [weights], local_files_only=offline)
        except Exception as error:  # not cached, hub unreachable, no such repo: all "cannot be had"
            reason = "HF_HUB_OFFLINE is set and they are not in the cache" if offline else str(error)
            raise _missing(f"of {model!r}", reason) from error
        if (Path(directory) / weights).is_file():
            return _local_dir(f"{LOCAL_DIR_PREFIX}{directory}")
    raise _missing(f"of {model!r}", f"the repository has none of {HUB_WEIGHT_FILES}")


def _tag_weights(open_clip, model: str, tag: str, tag_config: dict) -> _Resolved:
    """The checkpoint file of a pretrained tag, from the cache or the hub, as open_clip would fetch it."""
    options = {
        "image_mean": tag_config.get("mean"),
        "image_std": tag_config.get("std"),
        "image_interpolation": tag_config.get("interpolation"),
        "image_resize_mode": tag_config.get("resize_mode"),
        "force_quick_gelu": tag_config.get("quick_gelu", False),
    }
    what = f"{model!r} / pretrained {tag!r}"
    if tag_config.get("file"):
        return _Resolved(model, tag_config["file"], options)
    if not tag_config.get("hf_hub"):
        # A URL-only tag: open_clip downloads it itself, with no cache-only mode to ask for.
        if hub_offline():
            raise _missing(what, "they are downloaded from a URL and HF_HUB_OFFLINE is set")
        return _Resolved(model, tag, {})
    from huggingface_hub import hf_hub_download

    # open_clip's convention: 'org/repo/filename', or 'org/repo/' for the default file name.
    repo, filename = os.path.split(tag_config["hf_hub"])
    filenames = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    offline = hub_offline()
    error: Exception | None = None
    for name in filenames:
        try:
            path = hf_hub_download(repo, name, local_files_only=offline, library_name="open_clip")
            return _Resolved(model, path, options)
        except Exception as failure:  # try the next file name; the last failure says why
            error = failure
    where = f"hf-hub:{repo}"
    reason = f"{where} is not in the Hugging Face cache and HF_HUB_OFFLINE is set" if offline else f"{where}: {error}"
    raise _missing(what, reason) from error


def _resolve(config: ClipConfig) -> _Resolved:
    if config.model.startswith(LOCAL_DIR_PREFIX):
        return _local_dir(config.model)
    if config.model.startswith(HF_HUB_PREFIX):
        return _hub_repo(config.model)
    open_clip = _open_clip()
    if config.model not in open_clip.list_models():
        raise ModelNotFound(f"{config.model!r} is not an open_clip architecture (see open_clip.list_models())")
    if not config.pretrained:
        # A CLIP with random weights embeds nothing meaningful; refuse rather than serve noise.
        raise _missing(f"for {config.model!r}", "no pretrained tag or checkpoint file is configured")
    tag_config = open_clip.get_pretrained_cfg(config.model, config.pretrained)
    if tag_config:
        return _tag_weights(open_clip, config.model, config.pretrained, tag_config)
    checkpoint = Path(config.pretrained).expanduser()
    if checkpoint.is_file():
        return _Resolved(config.model, str(checkpoint), {})
    tags = open_clip.list_pretrained_tags_by_model(config.model)
    raise _missing(
        f"{config.pretrained!r} for {config.model!r}",
        f"it is neither a checkpoint file nor one of the pretrained tags {tags}",
    )


class ClipEncoder:
    """Images and texts to unit-length float32 vectors that can be compared with each other."""

    def __init__(self, config: ClipConfig):
        import torch

        resolved = _resolve(config)  # raises ModelNotFound before anything heavy is loaded
        open_clip = _open_clip()
        self.config = config
        self.device = torch.device(resolve_device(config.device))
        options = {key: value for key, value in resolved.options.items() if value is not None}
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                resolved.model_name, pretrained=resolved.pretrained, device=self.device, **options
            )
        except (FileNotFoundError, RuntimeError) as error:
            # A URL-only tag that could not be downloaded, or a file that vanished since it was found.
            raise _missing(f"for {config.model!r}", str(error)) from error
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(resolved.model_name)
        # One forward pass at a time: the server embeds from several threads, and interleaved passes on
        # one model gain nothing on CPU while multiplying peak memory on GPU.
        self._lock = threading.Lock()
        pretrained = None if config.model.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX)) else config.pretrained
        self.info = ClipInfo(name=config.model, pretrained=pretrained, dimension=self._dimension())

    def _dimension(self) -> int:
        embed_dim = getattr(self.model, "embed_dim", None)
        if isinstance(embed_dim, int):
            return embed_dim
        # Not every open_clip model (CoCa, HF-text towers) keeps embed_dim: measure the output instead.
        return int(self.embed_texts(["a photo"]).shape[1])

    def embed_images(self, images: Sequence) -> np.ndarray:
        """One vector per PIL image; any mode (converted to RGB) and any size (the model's preprocessing)."""
        return self.embed_pixels([self.pixels(image) for image in images])

    def pixels(self, image) -> Any:
        """What the model reads of a PIL image (any mode or size): its preprocessing's tensor. Safe to
        run in any thread, so that request threads prepare their pictures while the model runs others."""
        return self.preprocess(image.convert("RGB"))

    def embed_pixels(self, pixels: Sequence) -> np.ndarray:
        """One vector per tensor from pixels(): the forward passes alone."""

        def encode(batch):
            import torch

            return self.model.encode_image(torch.stack(batch).to(self.device))

        return self._embed(list(pixels), encode)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text; texts longer than the model's context are truncated by its tokenizer."""

        def encode(batch):
            return self.model.encode_text(self.tokenizer(batch).to(self.device))

        return self._embed(list(texts), encode)

    def _embed(self, items: list, encode) -> np.ndarray:
        import torch

        if not items:
            return np.zeros((0, self.info.dimension), dtype=np.float32)
        parts = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(items), self.config.batch_size):
                check_cancelled()  # the client left, or the server stops (encoders.cancel)
                vectors = encode(items[start : start + self.config.batch_size])
                parts.append(vectors.float().cpu().numpy())
        return l2_normalize(np.concatenate(parts))


def create_clip_encoder(config: ClipConfig) -> ClipEncoder:
    return ClipEncoder(config)
