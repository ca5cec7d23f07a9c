"""The one settings object. Every field can be set by an environment variable ``KB_<FIELD>``.

Built at the edges (the CLI, the UI) and passed into ``app.pipeline``; nothing
reads settings at import time. Wrong values fail at start with a message that
names the variable, e.g. ``KB_CHUNK_OVERLAP=900: must be smaller than
KB_CHUNK_TOKENS (256)``.

Deliberately not here: per-collection overrides stored on disk, a config file
format of our own (a ``.env`` file in the working folder is read, that is all).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.errors import KbError

ENV_PREFIX = "KB_"
COLLECTION_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # also a folder name: no separators, no leading dot


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kbqa"


class SettingsError(KbError):
    """Settings that cannot work; the message names the variables to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)

    # Where things live
    home: Path = Field(Path(".kb"), description="Folder for collections (indexes).")
    collection: str = Field("default", pattern=COLLECTION_NAME, description="Knowledge base name.")
    documents_dir: Path = Field(Path("data"), description="Folder a pipeline used on its own saves added files into (Pipeline.add_documents). The UI and `kb serve` keep every collection's uploads under the home instead, in documents/<collection>/.")
    model_cache: Path = Field(default_factory=_default_cache, description="Where assembled model files are kept.")

    # Ingest
    embedding_model: str = Field("multilingual-e5-small", description="Built-in embedder name or a sentence-transformers folder.")
    second_embedder: str = Field("all-minilm-l6-v2", description="Second embedder whose cosine joins the hybrid first stage ('none' to switch off; a built-in name or a sentence-transformers folder). Its vectors are computed at ingest.")
    chunk_tokens: int = Field(256, ge=16, le=8192, description="Chunk size in embedder tokens.")
    chunk_overlap: int = Field(32, ge=0, description="Overlap between neighbouring chunks, in tokens.")
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Chunks handed to the embedder at once; it sorts them by length and batches them itself (32 on a CPU, 128 on a GPU).")
    parse_workers: int | None = Field(None, ge=1, le=64, description="Processes reading files ahead of the embedder; default: half the CPUs, at least 1, at most 8.")
    max_file_mb: float = Field(200.0, gt=0, description="Larger files are reported and skipped.")
    ingest_give_way_seconds: float = Field(60.0, ge=0, description="While questions are answered, an ingest in the "
                                           "same process waits before each embedding batch, at most this long (0: never).")
    max_waiting_per_user: int = Field(8, ge=1, description="Questions one user (API key, browser session) may have "
                                      "waiting for the generator; one more is refused (429) until one is answered.")
    max_file_passages: int = Field(20_000, ge=1, description="A file whose text makes more passages is refused with "
                                   "the count (embedding 20,000 takes about half an hour on 2 cores).")
    file_timeout_seconds: float = Field(600.0, gt=0, description="A file taking longer to read (parse + OCR) is reported and skipped.")
    ocr: bool = Field(True, description="OCR PDF pages that have no text layer.")
    pdf_passwords: list[str] = Field(default_factory=list, description='Passwords to try on encrypted PDFs, as JSON: ["pw1", "pw2"].')
    checkpoint_seconds: float = Field(30.0, ge=0, description="Save the index at least this often during an ingest.")

    # Retrieval
    first_stage: Literal["hybrid", "dense", "keyword"] = Field("hybrid", description="Which searches the first stage runs.")
    fusion: Literal["weighted", "rrf"] = Field("weighted", description="How hybrid search merges dense and keyword scores.")
    dense_weight_en: float = Field(0.2, ge=0.0, le=1.0, description="Weight of the dense score for English queries (weighted fusion); the second embedder's weight is added to it when there are no second scores.")
    dense_weight_zh: float = Field(0.3, ge=0.0, le=1.0, description="Weight of the dense score for Chinese queries (weighted fusion).")
    second_weight_en: float = Field(0.15, ge=0.0, le=1.0, description="Weight of the second embedder's score for English queries (weighted fusion).")
    second_weight_zh: float = Field(0.0, ge=0.0, le=1.0, description="Weight of the second embedder's score for Chinese queries (all-MiniLM-L6-v2 cannot read Chinese).")
    exact_search_up_to: int = Field(200_000, ge=0, description="Collections larger than this many chunks use an approximate (IVF) vector index.")
    store: Literal["local", "milvus"] = Field("local", description="Where new collections are stored: 'local' (FAISS and keyword files under KB_HOME) or 'milvus' (a Milvus collection; KB_MILVUS_URI). An existing collection stays where it was made.")
    milvus_uri: str | None = Field(None, description="Milvus address: a file path for embedded Milvus Lite (one process per file), or http://host:19530 for a Milvus server or cluster. Default with KB_STORE=milvus: <KB_HOME>/milvus.db.")
    milvus_token: SecretStr | None = Field(None, description="Milvus token ('user:password' or an API key), sent to the server, never stored.")
    milvus_index: Literal["FLAT", "IVF_FLAT", "HNSW"] = Field("FLAT", description="Milvus vector index of new collections: FLAT is exact (what the local store does up to KB_EXACT_SEARCH_UP_TO); HNSW or IVF_FLAT for tens of millions of passages (docs/benchmarks.md).")
    ray_address: str | None = Field(None, description="Ingest on a Ray cluster at this address (ray://head:10001, or 'auto' for the cluster this machine belongs to, 'local' to start one here): files read in Ray tasks, passages embedded by a pool of embedder actors. Unset: ingest in this process.")
    ray_embedders: int | None = Field(None, ge=1, le=1024, description="Embedder actors of a Ray ingest; default: one per GPU of the cluster, else one.")
    dense_feedback: float = Field(0.0, ge=0.0, le=4.0, description="Pseudo-relevance feedback: weight of the top 3 chunks' mean vector added to the query vector (0: off; see docs/benchmarks.md).")
    first_stage_k: int = Field(40, ge=1, le=10_000, description="Candidates each first-stage search passes on.")
    reranker: str = Field("none", description="'none', 'lexical-fusion' or a CrossEncoder folder.")
    rerank_dense_weight: float = Field(0.5, ge=0.0, le=1.0, description="Weight of the first-stage score in lexical fusion.")
    document_scope: Literal["filter", "off"] = Field("filter", description="A question naming documents (an organisation, a period, 'the latest': retrieval.scope) searches only those ('filter') or is not scoped ('off'). A score boost instead of the filter was measured and not adopted (docs/benchmarks.md).")
    table_row_weight: float = Field(1.0, ge=0.0, le=10.0, description="In the documents a question names, passages whose table has a row labelled with what the question asks for move up by this x the row match (retrieval.table_rows); 0 switches it off.")
    across_documents: int = Field(8, ge=1, le=20, description="Most documents a question across periods ('over the quarters') gets one passage from.")
    abstain: bool = Field(True, description="Say 'not in the documents' when the passages do not cover the question.")
    abstain_min_coverage: float = Field(0.45, ge=0.0, le=1.0, description="Least share of the question's keyword weight the passages must contain (calibrated on RGB + DomainRAG, docs/benchmarks.md).")
    abstain_min_dense: float = Field(0.0, ge=-1.0, le=1.0, description="Least cosine similarity of the best passage.")
    abstain_reworded_min_dense: float = Field(0.86, ge=0.0, le=1.01, description="Below the coverage threshold, still answer when the best passage's cosine reaches this and it holds every name and number of the question (reworded questions; calibrated in docs/benchmarks.md). Above 1: off.")
    withdraw_unsupported: bool = Field(True, description="Withdraw answer sentences that state a figure, date or name no passage holds, or rest on a passage about another year than the question names (llm.verification).")
    decline_unsupported: bool = Field(True, description="Answer 'not in the documents' when no supported sentence is left after the checks (else only when no sentence is left at all; docs/benchmarks.md).")
    keep_held_figures: bool = Field(True, description="Do not decline an answer whose unsupported sentence states figures its cited passages write (wording is weak evidence, a figure strong; llm.answer).")
    figure_context_min: float = Field(0.0, ge=0.0, le=1.0, description="Withdraw a sentence whose figure stands only in passage sentences holding less than this share of the question's keywords (llm.verification; 0: off).")
    new_words_min: float = Field(0.0, ge=0.0, le=1.0, description="Flag a supported sentence as unverified when the passage sentences it rests on hold less than this share of its words that the question lacks (llm.verification; 0: off; 0.7 declines more near-misses and refuses more answerable questions: docs/benchmarks.md).")
    abstain_min_answer_support: float = Field(0.0, ge=0.0, le=1.0, description="Least support of the generated answer by a passage (answer words next to question words); below it the answer is withdrawn.")
    context_chunks: int = Field(5, ge=1, le=50, description="Most passages put in the prompt.")
    source_tokens: int = Field(128, ge=0, le=8192, description="Trim each passage after the first whole_sources to its sentences that match the question, within this many model tokens (CMRC2018: time to first token 17.6 -> 10.7 s, same accuracy; docs/benchmarks.md); 0 keeps passages whole.")
    whole_sources: int = Field(1, ge=0, le=50, description="Best-ranked passages never trimmed.")

    # Generation
    llm_model: str = Field("qwen2.5-coder-1.5b-instruct-q4_k_m", description="Built-in model name or a .gguf path.")
    context_window: int = Field(4096, ge=512, le=131_072)
    max_answer_tokens: int = Field(512, ge=16, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    threads: int | None = Field(None, ge=1, description="CPU threads; default: physical cores.")
    gpu_layers: int | None = Field(None, ge=-1, description="Layers on the GPU; default: all when the build can offload, else 0.")
    llm_base_url: str | None = Field(None, description="Generate through an OpenAI-compatible model server at this address (with its /v1, e.g. http://gpu-box:8000/v1) instead of the in-process model; KB_LLM_MODEL, threads and GPU layers are then unused. KB_CONTEXT_WINDOW must say the server's window.")
    llm_api_key: SecretStr | None = Field(None, description="API key the model server expects, if any (sent as a Bearer token, never stored).")
    llm_server_model: str | None = Field(None, description="Model name on the server; default: the first one it lists.")
    llm_timeout_seconds: float = Field(120.0, gt=0, le=3600, description="Longest wait for the model server to connect or to send the next piece of an answer.")

    # UI
    ui_host: str = Field("127.0.0.1", description="Address the web UI binds to; localhost unless you choose otherwise.")
    ui_port: int = Field(8501, ge=1, le=65535)
    max_upload_mb: int = Field(200, ge=1, description="Largest upload, in MB (UI and API; the API answers 413 above it).")
    service_url: str | None = Field(None, description="The `kb serve` the web UI is a client of (its login, queue, models and audit log), e.g. http://127.0.0.1:8000. Default: the service at KB_SERVE_HOST/KB_SERVE_PORT, which `kb ui` starts itself when none answers there.")
    front_key_file: Path | None = Field(None, description="The service's front key, which lets the web UI name the browser a login comes from (default: <home>/front.key, made by `kb serve`).")

    # Service (kb serve)
    serve_host: str = Field("127.0.0.1", description="Address `kb serve` binds to; a non-loopback one needs accounts (`kb users add`).")
    serve_port: int = Field(8000, ge=1, le=65535)
    audit_questions: bool = Field(False, description="Write the text of every question and search into the audit log (off: who asked which collection, not what).")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list, description="Addresses or networks of the reverse proxies whose X-Forwarded-For header is believed (comma-separated or JSON: 127.0.0.1,10.0.0.0/8); the client is then the right-most address of the header that is not one of them. Empty: nobody's header, the client is the address the connection comes from (`kb serve` and `kb ui`).")

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_list(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: "127.0.0.1,10.0.0.0/8" or a JSON list
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [part for part in text.replace(" ", ",").split(",") if part]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an address or a network (e.g. 127.0.0.1 or 10.0.0.0/8)") from None
        return [entry.strip() for entry in value]

    @field_validator("service_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value.strip()):
            raise ValueError(f"{value!r} is not an http:// or https:// address (e.g. http://127.0.0.1:8000)")
        return value.strip() if value else None

    @field_validator("embedding_model", "second_embedder", "reranker", "llm_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"KB_CHUNK_OVERLAP ({self.chunk_overlap}) must be smaller than KB_CHUNK_TOKENS ({self.chunk_tokens})"
            )
        for language in ("en", "zh"):
            dense, second = getattr(self, f"dense_weight_{language}"), getattr(self, f"second_weight_{language}")
            if dense + second > 1.0 + 1e-9:
                raise ValueError(
                    f"KB_DENSE_WEIGHT_{language.upper()} ({dense}) + KB_SECOND_WEIGHT_{language.upper()} ({second}) "
                    "must not exceed 1: the rest is the keyword score's weight"
                )
        if self.max_answer_tokens >= self.context_window // 2:
            raise ValueError(
                f"KB_MAX_ANSWER_TOKENS ({self.max_answer_tokens}) must be under half of "
                f"KB_CONTEXT_WINDOW ({self.context_window}) to leave room for sources"
            )
        return self

    @property
    def collection_dir(self) -> Path:
        return self.home / "collections" / self.collection

    @property
    def collections_root(self) -> Path:
        return self.home / "collections"

    @property
    def service_address(self) -> str:
        """The service the web UI is a client of: KB_SERVICE_URL, or the local `kb serve` (a service bound to every
        address is reached on loopback)."""
        if self.service_url:
            return self.service_url.rstrip("/")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.serve_host, self.serve_host)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.serve_port}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and .env) plus explicit overrides, or a readable error."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from None
