"""Ingest on a Ray cluster: files read by reader actors, passages embedded by a pool of embedder actors.

``kb ingest PATH --ray [ADDRESS]`` and ``KB_RAY_ADDRESS`` (the service's upload jobs) put
``Settings.ray_address``; ``app.indexing.Indexer.ingest`` then submits each file here and writes what comes
back (``PreparedFile``) to the store itself, in its usual loop: hashing, checkpoints, pruning, the report and
the write lock stay the indexer's, and so does idempotence: a file is written under its content hash, a
killed driver's unsaved work is redone by the next run (the local store keeps its last generation, the
Milvus store rolls back a half-written batch), and no passage is written twice.

- **Readers** (``_Reader``, ``readers`` actors, one per parse worker of the head's setting): each keeps one
  isolated reader process (``ingest.isolation``: the same time limit, a crash or a hang costs that file
  only). The driver sends the file's bytes through Ray's object store, so workers need no shared file
  system. Readers ask for no CPU of Ray's: they mostly wait for their parser process, and on a small
  machine reserved CPUs would leave none for the embedders.
- **Embedders** (``_Embedder``, ``ray_embedders`` actors; default one per GPU of the cluster, else one):
  each loads the embedder and the second embedder once (from the node's model cache, built from the
  installed packages like anywhere else), chunks the file under its document record and embeds it
  (``app.indexing.prepare_file``). On a cluster with GPUs each takes one GPU; else each takes its share of
  the CPUs (2 CPUs, 2 actors: one torch thread each).

``address``: ``local`` starts a Ray instance on this machine for the ingest and stops it after; ``auto``
joins the cluster this machine belongs to (``ray start``); anything else is passed to ``ray.init``
(``ray://head:10001``).

Deliberately not here: the Ray cluster itself (``ray start --head`` and workers: README), retrying a
failed actor (a crashed embedder fails the ingest; its saved work stays and the next run goes on), reading
text documents (``ingest_documents``: they are text already, embedded where the pipeline runs).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ray

from app.indexing import PreparedFile, prepare_file
from app.settings import Settings
from core.errors import KbError
from core.types import LoadedFile
from ingest.chunking import Chunker
from ingest.isolation import IsolatedLoader
from ingest.loaders import LoadError, LoadOptions
from retrieval.embedders import load_embedder


class RayError(KbError):
    """The Ray cluster cannot be reached or the address is not one."""


@ray.remote(num_cpus=0)
class _Reader:
    """Reads files in its own isolated parser process, with the time limit."""

    def __init__(self, options: LoadOptions, timeout_seconds: float) -> None:
        self._loader = IsolatedLoader(options, timeout_seconds, workers=1).__enter__()
        self._folder = Path(tempfile.mkdtemp(prefix="kb-reader-"))

    def read(self, source: str, data: bytes) -> LoadedFile | str:
        """The file's pages, or why it could not be read (a ``LoadError``'s message)."""
        path = self._folder / f"file{Path(source).suffix.lower()}"  # the reader goes by the suffix
        path.write_bytes(data)
        try:
            return self._loader.submit(path, source).result()
        except LoadError as exc:
            return str(exc)
        finally:
            path.unlink(missing_ok=True)


class _Embedder:
    """Chunks and embeds read files with the settings' embedders (loaded once per actor)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._embedder = load_embedder(settings.embedding_model, settings.model_cache)
        second = settings.second_embedder
        self._second = None if second.lower() == "none" else load_embedder(second, settings.model_cache)
        self._chunker = Chunker(self._embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)

    def prepare(self, loaded: LoadedFile | str) -> PreparedFile | str:
        if isinstance(loaded, str):
            return loaded  # the reader's failure, passed on
        try:
            return prepare_file(loaded, self._chunker, self._embedder, self._second, self._settings.embed_batch_size,
                                self._settings.max_file_passages)
        except LoadError as exc:
            return str(exc)


@dataclass
class RayJob:
    """A file on its way through the cluster; ``result()`` is its ``PreparedFile`` or raises ``LoadError``."""

    source: str
    _ref: object

    def result(self) -> PreparedFile:
        prepared = ray.get(self._ref)
        if isinstance(prepared, str):
            raise LoadError(prepared)
        return prepared


class RayFiles:
    """``with RayFiles(settings, options) as cluster: cluster.submit(path, source).result()``."""

    def __init__(self, settings: Settings, options: LoadOptions) -> None:
        self._settings = settings
        self._options = options
        self._started = False
        self._readers: list = []
        self._embedders: list = []
        self._turn = 0

    def __enter__(self) -> RayFiles:
        address = self._settings.ray_address or "local"
        if address not in ("local", "auto") and ":" not in address:
            raise RayError(f"{address!r} is not a Ray address (local, auto, host:6379 or ray://head:10001); "
                           "with `kb ingest`, put --ray after the folder and the other options")
        if not ray.is_initialized():
            try:
                if address == "local":
                    ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
                else:
                    ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayError(f"cannot join the Ray cluster at {address}: {exc}") from None
            self._started = True
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        count = self._settings.ray_embedders or max(1, gpus)
        # On GPUs one each; on CPUs each its share, so that torch runs as many threads as it was given.
        placement = {"num_gpus": 1} if gpus else {"num_cpus": max(1, cpus // count)}
        embedder_actor = ray.remote(**placement)(_Embedder)
        self._embedders = [embedder_actor.remote(self._settings) for _ in range(count)]
        workers = self._settings.parse_workers or max(1, min(8, cpus // 2))
        self._readers = [_Reader.remote(self._options, self._settings.file_timeout_seconds) for _ in range(workers)]
        return self

    @property
    def read_ahead(self) -> int:
        """Files in flight: enough to keep every actor busy, few enough to bound the driver's memory."""
        return 2 * (len(self._readers) + len(self._embedders))

    def submit(self, path: Path, source: str) -> RayJob:
        reader = self._readers[self._turn % len(self._readers)]
        embedder = self._embedders[self._turn % len(self._embedders)]
        self._turn += 1
        loaded = reader.read.remote(source, Path(path).read_bytes())
        return RayJob(source, embedder.prepare.remote(loaded))

    def __exit__(self, *exc_info: object) -> None:
        for actor in self._readers + self._embedders:
            ray.kill(actor)
        self._readers, self._embedders = [], []
        if self._started:
            ray.shutdown()
