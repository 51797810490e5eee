"""A tiny CLIP, trained in seconds, for tests that cannot download the real one.

It is the real open_clip architecture (ViT image tower, transformer text tower, the real BPE tokenizer
with its 49408 tokens), only small: 32x32 images in 8x8 patches, width 64, two layers per tower. It is
trained with the CLIP contrastive loss on synthetic captioned pictures, coloured shapes on a plain
background ("a red circle"), so unlike a random model its vectors mean something: a caption lands next to
its picture, and a picture next to an altered copy of itself.

It is saved both ways a user can point Prism at CLIP weights:
- `local-dir:<directory>`: `open_clip_config.json` and `open_clip_pytorch_model.bin`;
- an architecture name plus a checkpoint file: the config registered with open_clip under
  TINY_CLIP_NAME, and the state dict in CHECKPOINT_FILE, for `pretrained=<directory>/tiny_clip.pt`.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from encoders.torchvision_fix import ensure_torchvision_importable

TINY_CLIP_NAME = "prism-tiny-clip"
CHECKPOINT_FILE = "tiny_clip.pt"  # not .bin/.pth/.safetensors: local-dir loading must not pick it up

COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 215, 20)}
SHAPES = ["circle", "square", "triangle"]

TINY_CLIP_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def caption(color: str, shape: str) -> str:
    return f"a {color} {shape}"


def make_shape_image(color: str, shape: str, size: int = 64, seed: int | None = None) -> Image.Image:
    """A `color` `shape` on a light grey background; with a seed, its size, place and background vary.

    Without a seed the shape is centred and fills half the picture. Shapes are left-right symmetric, so a
    mirrored picture still shows the same thing.
    """
    rng = random.Random(seed)
    varied = seed is not None
    grey = rng.randint(200, 250) if varied else 230
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    half = size * (rng.uniform(0.2, 0.35) if varied else 0.25)
    cx = size / 2 + (rng.uniform(-1, 1) * (size / 2 - half - 1) if varied else 0)
    cy = size / 2 + (rng.uniform(-1, 1) * (size / 2 - half - 1) if varied else 0)
    box = (cx - half, cy - half, cx + half, cy + half)
    draw = ImageDraw.Draw(image)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")
    return image


def all_classes() -> list[tuple[str, str]]:
    return [(color, shape) for color in COLORS for shape in SHAPES]


def _augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """What the tests do to pictures (mirror, resize, JPEG), so the model learns to ignore it."""
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rng.random() < 0.5:
        image = image.resize((rng.randint(24, 96),) * 2)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=rng.randint(40, 90))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def build_tiny_clip(directory: Path | str, train_steps: int = 300, seed: int = 0) -> Path:
    """Train the tiny CLIP and save it into `directory` (created); returns the directory.

    Also registers TINY_CLIP_NAME with open_clip in this process, for architecture + checkpoint loading.
    Each step is one batch with every caption once (12 pairs), so the contrastive loss has no duplicate
    captions to confuse it. 300 steps take about 10 s on two idle cores. Learning rates
    of 3e-3 and up collapse to a constant embedding; 1e-3 learns.
    """
    ensure_torchvision_importable()  # before open_clip imports torchvision
    import open_clip

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config_dir = directory / "open_clip_configs"
    config_dir.mkdir(exist_ok=True)
    (config_dir / f"{TINY_CLIP_NAME}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config_dir)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}))

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(TINY_CLIP_NAME)
    tokenizer = open_clip.get_tokenizer(TINY_CLIP_NAME)
    classes = all_classes()
    tokens = tokenizer([caption(color, shape) for color, shape in classes])
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    model.train()
    for _ in range(train_steps):
        pictures = [
            _augment(make_shape_image(color, shape, seed=rng.randrange(1 << 30)), rng) for color, shape in classes
        ]
        pixels = torch.stack([preprocess(picture) for picture in pictures])
        image_features, text_features, logit_scale = model(pixels, tokens)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()

    state = model.state_dict()
    torch.save(state, directory / "open_clip_pytorch_model.bin")
    torch.save(state, directory / CHECKPOINT_FILE)
    return directory
