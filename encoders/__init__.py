"""Encoders: models that turn content into vectors. Nothing here knows about storage or HTTP."""

from encoders.base import (
    EncoderError,
    EncoderInfo,
    EncoderUnavailable,
    ModelNotFound,
    TextEncoder,
    l2_normalize,
    truncate_dimensions,
)
from encoders.config import TextEncoderConfig
from encoders.factory import create_text_encoder

__all__ = [
    "EncoderError",
    "EncoderInfo",
    "EncoderUnavailable",
    "ModelNotFound",
    "TextEncoder",
    "TextEncoderConfig",
    "create_text_encoder",
    "l2_normalize",
    "truncate_dimensions",
]
