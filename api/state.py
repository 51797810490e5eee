"""Loading the models and the store in the background, so the server answers /healthz at once.

Until the Library is ready, /readyz and every /v1 route answer 503 with the reason. A backend that is
down at start (an SGLang server still loading, a Milvus server still booting) is retried with backoff;
a wrong configuration (an index built by another model) is reported and not retried. Once the Library
is open, the background jobs a previous run left unfinished resume (retrieval/jobs.py).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from api.jobs import job_handlers
from api.errors import ServiceNotReady
from api.settings import Settings
from encoders import EncoderUnavailable, create_text_encoder
from encoders.base import set_cpu_threads
from encoders.clip import ClipEncoder, create_clip_encoder
from encoders.rerank import Reranker, create_reranker
from encoders.whisper import Transcriber, create_transcriber
from retrieval import Library, MilvusStore, StoreUnavailable
from retrieval.blobs import BlobStore
from retrieval.text_queue import queue_text_encoder

log = logging.getLogger("prism")

T = TypeVar("T")

RETRY_DELAYS_S = (1, 2, 5, 10, 30)  # then every 30 s


def open_library(settings: Settings) -> Library:
    """Build the Library from settings: the one wiring used by the server and the CLI."""
    threads = set_cpu_threads(settings.cpu_threads)  # before the models load: they size their pools then
    log.info("threads per operation: %d (PRISM_CPU_THREADS %s)", threads, settings.cpu_threads or "unset: half the cores")
    encoder = create_text_encoder(settings.text_encoder_config())  # logs a WARNING if it fell back
    encoder = queue_text_encoder(encoder, settings.text_queue_config())  # queries never wait behind ingest
    opened: list = [encoder]  # closed again if the Library cannot be built (loading is retried)
    try:
        transcriber, audio_error = open_transcriber(settings)
        clip, image_error = open_clip_encoder(settings)
        reranker, rerank_error = open_reranker(settings)
        opened.append(reranker)
        token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
        store = MilvusStore(settings.store_uri, token=token, lite_index_max_items=settings.lite_index_max_items)
        opened.append(store)
        image_store = MilvusStore(settings.store_uri, token=token, space="image", lite_index_max_items=settings.lite_index_max_items)
        opened.append(image_store)
        return Library(
            encoder,
            store,
            BlobStore(settings.blob_dir),
            settings.chunking_config(),
            settings.embedding_cache_size,
            transcriber=transcriber,
            audio_config=settings.audio_config(),
            audio_error=audio_error,
            image_store=image_store,
            clip=clip,
            image_config=settings.image_config(),
            image_error=image_error,
            reranker=reranker,
            rerank_error=rerank_error,
            jobs=settings.job_config(),
        )
    except BaseException:
        for part in reversed(opened):
            close = getattr(part, "close", None)
            if close is not None:
                close()
        raise


def open_serving_library(settings: Settings) -> Library:
    """open_library, and its background jobs running: what the server (and the CLI's in-process app)
    serves. Jobs left unfinished by a restart or a crash run first (queued ones, and those running
    when the process died: they run again from the start). Other users of open_library run no jobs."""
    library = open_library(settings)
    try:
        if library.jobs is not None:
            handlers = job_handlers(library)
            library.jobs.start(handlers)
            log.info("background jobs: running %s", ", ".join(sorted(handlers)) or "no kinds (their models are missing)")
    except BaseException:
        library.close()
        raise
    return library


def load_optional(modality: str, load: Callable[[], T]) -> tuple[T | None, str | None]:
    """The model of an optional modality (audio, images), or why there is none: a missing model or a
    broken install is reported in /v1/info and on that modality's routes, and text keeps working."""
    try:
        return load(), None
    except Exception as error:
        log.error("%s unavailable: %s: %s", modality, type(error).__name__, error)
        return None, f"{type(error).__name__}: {error}"


def open_transcriber(settings: Settings) -> tuple[Transcriber | None, str | None]:
    if not settings.whisper_model:
        return None, "audio is disabled (PRISM_WHISPER_MODEL is empty)"
    return load_optional("audio is", lambda: create_transcriber(settings.whisper_config()))


def open_clip_encoder(settings: Settings) -> tuple[ClipEncoder | None, str | None]:
    if not settings.image_model:
        return None, "images are disabled (PRISM_IMAGE_MODEL is empty)"
    return load_optional("images are", lambda: create_clip_encoder(settings.clip_config()))


def open_reranker(settings: Settings) -> tuple[Reranker | None, str | None]:
    if settings.rerank_backend == "none":
        return None, "reranking is off (PRISM_RERANK_BACKEND=none)"
    return load_optional("reranking is", lambda: create_reranker(settings.reranker_config()))


class AppState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.library: Library | None = None
        self.error: str | None = None  # why the library is not ready, once loading failed
        self._stop = threading.Event()
        self._attempted = threading.Event()  # set once the first loading attempt has ended
        self._thread: threading.Thread | None = None

    def start_loading(self) -> None:
        self._thread = threading.Thread(target=self._load, name="prism-loader", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the first loading attempt ends; True if it succeeded (tests, the CLI's direct mode)."""
        self._attempted.wait(timeout)
        return self.library is not None

    def _load(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            try:
                self.library = open_serving_library(self.settings)
                self.error = None
                info = self.library.text_model
                log.info("ready: text model %s (%d-d), store %s", info.name, info.dimension, self.library.store.kind)
                self._check_store()
                return
            except (EncoderUnavailable, StoreUnavailable) as error:
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                self.error = f"{error} (retrying in {delay} s)"
                log.warning("not ready: %s", self.error)
            except Exception as error:  # a configuration error: retrying would fail the same way
                self.error = f"{type(error).__name__}: {error}"
                log.error("cannot start: %s", self.error)
                return
            finally:
                self._attempted.set()
            attempt += 1
            self._stop.wait(delay)

    def _check_store(self) -> None:
        """`prism doctor` at start, after the server is ready: one log line."""
        try:
            report = self.library.doctor(fix=False)
        except Exception as error:  # noqa: BLE001 - a check must never stop the server
            log.warning("doctor: the check at start failed: %s", error)
            return
        if report.problems:
            log.warning("doctor: %s; run `prism doctor` for the list and `prism doctor --fix` to repair", report.summary())
        else:
            log.info("doctor: %s", report.summary())

    def require_library(self) -> Library:
        if self.library is None:
            raise ServiceNotReady(self.error or "models are still loading")
        return self.library

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.library is not None:
            self.library.close()
            self.library = None

