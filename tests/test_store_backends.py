"""The store protocol on both backends (local files, Milvus Lite), and what only the Milvus one has to show:
deletes leave nothing retrievable, a crash mid-write is rolled back, a local collection copies over, a file
another process holds gives an error that names the fix."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from core.types import Chunk
from retrieval import backend as backend_module
from retrieval.backend import StoreConfig, copy_collection, current_generation, open_collection
from retrieval.embedders import EmbedderIdentity
from retrieval.manifest import MILVUS_MARKER, CollectionMissingError, IndexMismatchError, StoreError
from retrieval.store import Collection
from tests.conftest import write
from tests.server_helpers import kb, kb_process
from text.keywords import keyword_tokens

IDENTITY = EmbedderIdentity(name="test-embedder", dim=8, fingerprint="v1")
SECOND = EmbedderIdentity(name="second-embedder", dim=4, fingerprint="s1")
TEXTS = ["tomatoes need six hours of sunlight", "inflate road bike tyres to 6 bar", "大熊猫每天吃十几公斤竹子",
         "sourdough rises slowly overnight", "绿茶的水温八十度左右"]


def chunks_for(source: str, count: int, offset: int = 0) -> list[Chunk]:
    return [Chunk(source, 1, ("Guide", source), i * 10, i * 10 + 5, f"{TEXTS[(i + offset) % len(TEXTS)]} ({source} {i})")
            for i in range(count)]


def unit_vectors(count: int, seed: int, dim: int = IDENTITY.dim) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def config(backend, milvus_uri) -> StoreConfig:
    return StoreConfig(kind=backend, milvus_uri=milvus_uri)


def open_store(folder, config, **options):
    return open_collection(folder, config, IDENTITY, **options)


def test_round_trip_search_replace_and_remove(tmp_path, config):
    collection = open_store(tmp_path, config, create=True)
    a_vectors, b_vectors = unit_vectors(3, 1), unit_vectors(2, 2)
    collection.put_file("a.md", "sha-a", chunks_for("a.md", 3), a_vectors, pages=1)
    collection.put_file("b.md", "sha-b", chunks_for("b.md", 2, offset=3), b_vectors, pages=2)
    generation = collection.save()
    assert current_generation(tmp_path, config) == generation and Collection.exists(tmp_path)

    reopened = open_store(tmp_path, config)
    assert reopened.backend == config.kind and reopened.chunk_count == 5
    assert reopened.files["a.md"].content_sha256 == "sha-a" and reopened.files["b.md"].pages == 2
    best = reopened.search(b_vectors[1], k=2)[0]
    assert best.chunk == chunks_for("b.md", 2, offset=3)[1]  # every field of the chunk comes back
    assert best.first_stage_score == pytest.approx(1.0, abs=1e-5)
    ids = reopened.chunk_ids_of(["b.md"])
    assert np.allclose(reopened.vectors(ids), b_vectors, atol=1e-6)
    assert reopened.dense_scores(b_vectors[0], ids)[0] == pytest.approx(1.0, abs=1e-5)
    keyword_hits = reopened.search_keywords(keyword_tokens("sourdough overnight"), k=5)
    assert reopened.chunk(keyword_hits[0][0]).text.startswith("sourdough")
    assert [c.start_char for c in reopened.chunks_of("a.md")] == [0, 10, 20]

    reopened.put_file("a.md", "sha-a2", chunks_for("a.md", 1), unit_vectors(1, 3), pages=1)  # replaced
    assert reopened.remove_file("b.md") and not reopened.remove_file("never.md")
    reopened.save()
    final = open_store(tmp_path, config)
    assert final.chunk_count == 1 and set(final.files) == {"a.md"}
    assert final.search(b_vectors[1], k=5)[0].chunk.source == "a.md"


def test_both_backends_score_keywords_and_coverage_alike(tmp_path, milvus_uri):
    """The Milvus store computes BM25 and coverage from stored tokens: the local index's figures, to 1e-9."""
    stores = []
    for kind in ("local", "milvus"):
        store = open_store(tmp_path / kind, StoreConfig(kind=kind, milvus_uri=milvus_uri), create=True)
        for n in range(4):
            store.put_file(f"f{n}.md", "sha", chunks_for(f"f{n}.md", 3, offset=n), unit_vectors(3, n), pages=1)
        store.remove_file("f2.md")  # deleted chunks must not count in the statistics either
        store.save()
        stores.append(store)
    local, milvus = stores
    for question in ("how long does sourdough rise", "熊猫吃竹子", "bike tyres sunlight 6 bar", "nothing matches"):
        terms = keyword_tokens(question)
        ids = local.chunk_ids_of(sorted(local.files))
        assert np.allclose(local.keyword_scores(terms, ids), milvus.keyword_scores(terms, ids), atol=1e-9)
        assert local.keyword_coverage(terms, ids[:2]) == pytest.approx(milvus.keyword_coverage(terms, ids[:2]), abs=1e-9)
        assert [i for i, _ in local.search_keywords(terms, 3)] == [i for i, _ in milvus.search_keywords(terms, 3)]


def test_opening_with_another_embedder_or_nothing_is_a_clear_error(tmp_path, config):
    collection = open_store(tmp_path, config, create=True)
    collection.put_file("a.md", "sha", chunks_for("a.md", 1), unit_vectors(1, 0), pages=1)
    collection.save()
    with pytest.raises(IndexMismatchError, match="test-embedder.*other-model"):
        open_collection(tmp_path, config, EmbedderIdentity(name="other-model", dim=8, fingerprint="v9"))
    with pytest.raises(CollectionMissingError, match="kb ingest"):
        open_store(tmp_path / "nothing", config)


def test_second_vectors_round_trip_and_are_recomputed_for_another_second_model(tmp_path, config):
    collection = open_store(tmp_path, config, create=True, second_identity=SECOND)
    second_a = unit_vectors(3, 7, dim=4)
    collection.put_file("a.md", "sha-a", chunks_for("a.md", 3), unit_vectors(3, 1), 1, second_vectors=second_a)
    collection.put_file("b.md", "sha-b", chunks_for("b.md", 2), unit_vectors(2, 2), 1)  # none for b yet
    assert not collection.has_second_vectors and collection.second_vectors_missing == 2
    missing = collection.missing_second_vectors()
    assert [collection.chunk(i).source for i in missing] == ["b.md", "b.md"]
    collection.put_second_vectors(missing, unit_vectors(2, 8, dim=4))
    assert collection.has_second_vectors and collection.missing_second_vectors() == []
    collection.save()

    reopened = open_store(tmp_path, config, second_identity=SECOND)
    a_ids = list(reopened.files["a.md"].chunk_ids)
    assert reopened.has_second_vectors
    assert reopened.second_scores(second_a[1], a_ids)[1] == pytest.approx(1.0, abs=1e-5)
    reopened.remove_file("a.md")
    reopened.save()
    assert open_store(tmp_path, config, second_identity=SECOND).has_second_vectors  # b's stay, a's went with a
    other = EmbedderIdentity(name="another-second", dim=4, fingerprint="x")
    switched = open_store(tmp_path, config, second_identity=other)
    assert switched.chunk_count == 2 and not switched.has_second_vectors and len(switched.missing_second_vectors()) == 2
    without = open_store(tmp_path, config)
    assert without.missing_second_vectors() == [] and not without.has_second_vectors


# ----- Milvus only ---------------------------------------------------------------------------------------
@pytest.fixture
def milvus(milvus_uri) -> StoreConfig:
    return StoreConfig(kind="milvus", milvus_uri=milvus_uri)


def _everything_findable(collection, vectors: np.ndarray, terms: list[str]) -> set[str]:
    found = {collection.chunk(i).source for v in vectors for i, _ in collection.search_dense(v, k=50)}
    return found | {collection.chunk(i).source for i, _ in collection.search_keywords(terms, k=50)}


def test_a_deleted_document_leaves_nothing_retrievable(tmp_path, milvus):
    collection = open_store(tmp_path, milvus, create=True, second_identity=SECOND)
    secret = unit_vectors(3, 5)
    collection.put_file("secret.md", "s", chunks_for("secret.md", 3), secret, 1, second_vectors=unit_vectors(3, 6, 4))
    collection.put_file("other.md", "o", chunks_for("other.md", 2), unit_vectors(2, 9), 1)
    collection.save()
    terms = keyword_tokens("tomatoes sunlight tyres 大熊猫 secret")
    assert "secret.md" in _everything_findable(collection, secret, terms)
    secret_ids = collection.chunk_ids_of(["secret.md"])
    collection.remove_file("secret.md")
    collection.save()

    for reader in (collection, open_store(tmp_path, milvus, second_identity=SECOND)):
        assert "secret.md" not in _everything_findable(reader, secret, terms)
        assert "secret.md" not in reader.files and "secret.md" not in reader.records
    # Not even by id, in any of the knowledge base's Milvus collections.
    db = backend_module._milvus(milvus)
    name = json.loads((tmp_path / MILVUS_MARKER).read_text())["collection"]
    assert db.get(name, secret_ids, ["id"]) == [] and db.get(f"{name}_second", secret_ids, ["id"]) == []
    assert db.count(name, 'document == "secret.md"') == 0


def test_a_crash_mid_write_is_rolled_back_and_the_rerun_gives_the_same_passages(tmp_path, milvus, monkeypatch):
    from retrieval import milvus_client

    collection = open_store(tmp_path, milvus, create=True)
    collection.put_file("a.md", "sha-a", chunks_for("a.md", 2), unit_vectors(2, 0), pages=1)
    collection.save()
    collection.put_file("a.md", "sha-a2", chunks_for("a.md", 3, offset=1), unit_vectors(3, 1), pages=1)  # changed
    collection.put_file("b.md", "sha-b", chunks_for("b.md", 2), unit_vectors(2, 2), pages=1)

    def crash(self, name, rows, partial=False):  # the process dies once the passages are in, before their rows
        if name.endswith("_meta") and '"done"' in rows[0]["payload"]:
            raise KeyboardInterrupt("killed")
        return original(self, name, rows, partial)

    original = milvus_client.MilvusConnection.upsert
    monkeypatch.setattr(milvus_client.MilvusConnection, "upsert", crash)
    with pytest.raises(KeyboardInterrupt):
        collection.save()
    monkeypatch.undo()

    reader = open_store(tmp_path, milvus)  # a reader meanwhile sees neither document half-written
    assert reader.files == {} and reader.search_dense(unit_vectors(3, 1)[0], k=10) == []
    rerun = open_store(tmp_path, milvus, create=True)  # the next ingest: both files are new again
    rerun.put_file("a.md", "sha-a2", chunks_for("a.md", 3, offset=1), unit_vectors(3, 1), pages=1)
    rerun.put_file("b.md", "sha-b", chunks_for("b.md", 2), unit_vectors(2, 2), pages=1)
    rerun.save()
    final = open_store(tmp_path, milvus)
    db = backend_module._milvus(milvus)
    assert final.chunk_count == 5 == db.count(final.name)  # no passage twice, none left over
    assert sorted(c.text for s in ("a.md", "b.md") for c in final.chunks_of(s)) == \
        sorted(c.text for c in chunks_for("a.md", 3, offset=1) + chunks_for("b.md", 2))


def test_a_local_collection_copies_into_milvus_without_embedding(tmp_path, milvus):
    local_config = StoreConfig(kind="local")
    local = open_store(tmp_path / "local", local_config, create=True, second_identity=SECOND)
    for n in range(3):
        local.put_file(f"f{n}.md", f"sha{n}", chunks_for(f"f{n}.md", 4, offset=n), unit_vectors(4, n), 2,
                       second_vectors=unit_vectors(4, 10 + n, 4) if n != 1 else None, reader_version=3)
    local.save()
    target = open_collection(tmp_path / "copy", milvus, IDENTITY, create=True, second_identity=SECOND, backend="milvus")
    assert copy_collection(local, target) == 12
    assert copy_collection(local, open_store(tmp_path / "copy", milvus, second_identity=SECOND)) == 0  # idempotent
    copy = open_store(tmp_path / "copy", milvus, second_identity=SECOND)
    assert copy.files.keys() == local.files.keys() and copy.chunk_count == 12
    assert {s: (f.content_sha256, f.pages, f.reader_version) for s, f in copy.files.items()} == \
        {s: (f.content_sha256, f.pages, f.reader_version) for s, f in local.files.items()}
    for source in local.files:
        assert copy.chunks_of(source) == local.chunks_of(source)
        assert np.allclose(copy.vectors(copy.chunk_ids_of([source])), local.vectors(local.chunk_ids_of([source])))
    assert copy.second_vectors_missing == 4  # f1 had none: the next ingest adds them
    f0 = copy.chunk_ids_of(["f0.md"])
    assert np.allclose(copy.stored_second_vectors(f0), local.stored_second_vectors(local.chunk_ids_of(["f0.md"])))


def test_a_milvus_lite_file_open_in_another_process_names_the_fix(tmp_path):
    held = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pymilvus; pymilvus.MilvusClient(uri=sys.argv[1]); print('open', flush=True); "
         "sys.stdin.read()", str(held)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="milvus-lite server --data-dir") as error:
            open_store(tmp_path / "c", StoreConfig(kind="milvus", milvus_uri=str(held)), create=True).save()
        assert "Traceback" not in str(error.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_the_command_line_copies_a_collection_into_milvus_and_deletes_it_there(tmp_path, run_models):
    """`kb collections --copy-to milvus` as a team moving to Milvus runs it, then searching and deleting the copy;
    each Milvus command a process of its own on one Milvus Lite file (opened, released, opened again). The local
    collection is ingested in this process (``tests.server_helpers.kb``): no Milvus there."""
    home, milvus = tmp_path / "home", str(tmp_path / "milvus.db")
    docs = tmp_path / "docs"
    write(docs / "pumps.md", "# Pumps\n\nThe pump runs at 3000 rpm and needs oil every month.\n")
    write(docs / "valves.md", "# Valves\n\nTurn the red valve clockwise to close it.\n")

    def in_its_own_process(*args: str) -> subprocess.CompletedProcess:
        done = kb_process(home, *args, KB_SECOND_EMBEDDER="none", KB_MILVUS_URI=milvus)
        assert done.returncode == 0, done.stderr
        return done

    ingested = kb(home, "ingest", str(docs), "-c", "hand", "--quiet", KB_SECOND_EMBEDDER="none")
    assert ingested.returncode == 0, ingested.stderr
    copied = in_its_own_process("collections", "--copy-to", "milvus", "-c", "hand")
    assert "copied 2 passages of hand into Milvus as hand-milvus" in copied.stdout
    assert "valves.md" in in_its_own_process("search", "how do I close the valve", "-c", "hand-milvus", "-k", "1").stdout
    assert {"hand", "hand-milvus"} <= set(in_its_own_process("collections").stdout.split())
    name = json.loads((home / "collections" / "hand-milvus" / MILVUS_MARKER).read_text())["collection"]
    in_its_own_process("collections", "--delete", "hand-milvus")
    db = backend_module._milvus(StoreConfig(kind="milvus", milvus_uri=milvus))
    assert not db.has(name) and not db.has(f"{name}_meta")


ODD_NAMES = ['he said "hi".md', "back\\slash.md", "it's.md", "手册 v2.md", "new\nline.md", "ctl\x01.md", "emoji 😀.md",
             "x' or key != '.md"]


def test_documents_with_odd_names_round_trip_and_are_deleted_alone(tmp_path, config):
    """Quotes, backslashes, a newline, a control character in document names: Milvus filter expressions
    must not break on them, and a name made like an expression must not match other documents' rows (pymilvus
    quotes string keys unescaped: ``it's.md`` failed and ``x' or key != '.md`` matched every document)."""
    folder = tmp_path / "知识库 ü -- x"  # a collection name Milvus would refuse as it is
    collection = open_store(folder, config, create=True)
    for n, name in enumerate(ODD_NAMES):
        collection.put_file(name, f"sha{n}", chunks_for(name, 2, offset=n), unit_vectors(2, n), pages=1)
    collection.save()
    reopened = open_store(folder, config)
    assert set(reopened.files) == set(ODD_NAMES)
    for n, name in enumerate(ODD_NAMES):
        reopened.put_file(name, f"sha{n}-2", chunks_for(name, 1, offset=n), unit_vectors(1, 50 + n), pages=1)  # replaced
    reopened.save()
    assert reopened.remove_file("x' or key != '.md") and reopened.remove_file("it's.md")
    reopened.save()

    final = open_store(folder, config)
    kept = [name for name in ODD_NAMES if name not in ("x' or key != '.md", "it's.md")]
    assert set(final.files) == set(kept) and final.chunk_count == len(kept)
    for name in kept:
        assert [chunk.source for chunk in final.chunks_of(name)] == [name]
        assert final.files[name].content_sha256.endswith("-2")
    found = _everything_findable(final, unit_vectors(len(ODD_NAMES), 0), keyword_tokens(" ".join(TEXTS)))
    assert found == set(kept)
    for name in kept:
        assert final.remove_file(name)
    final.save()
    assert open_store(folder, config).chunk_count == 0


def test_a_milvus_lite_file_held_elsewhere_prints_no_traceback(tmp_path, caplog):
    """Milvus Lite logs a traceback when its file is locked; the user sees the error that names the fix, only."""
    held = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pymilvus; pymilvus.MilvusClient(uri=sys.argv[1]); print('open', flush=True); "
         "sys.stdin.read()", str(held)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="another process"):
            open_store(tmp_path / "c", StoreConfig(kind="milvus", milvus_uri=str(held)), create=True).save()
        assert not [record for record in caplog.records if record.exc_info or "Failed to start" in record.getMessage()]
        not_a_folder = tmp_path / "file.db"
        not_a_folder.write_text("not Milvus")  # Milvus Lite wants a folder there: the reason, not the lock message
        with pytest.raises(StoreError, match="cannot open the Milvus Lite file .*File exists"):
            open_store(tmp_path / "d", StoreConfig(kind="milvus", milvus_uri=str(not_a_folder)), create=True).save()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_deleting_a_knowledge_base_drops_its_milvus_side_or_refuses_first(tmp_path, milvus_uri, make_settings):
    """``delete_collection`` (the web app's delete and ``kb collections --delete``) drops the Milvus collections
    too; with the Milvus unreachable it refuses before the folder goes, so nothing is left unnamed in Milvus."""
    from team.collections import delete_collection

    settings = make_settings(store="milvus", milvus_uri=milvus_uri)
    folder = settings.collections_root / "manuals"
    collection = open_store(folder, StoreConfig(kind="milvus", milvus_uri=milvus_uri), create=True)
    collection.put_file("a.md", "sha", chunks_for("a.md", 2), unit_vectors(2, 0), pages=1)
    collection.save()
    name = json.loads((folder / MILVUS_MARKER).read_text())["collection"]

    held = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pymilvus; pymilvus.MilvusClient(uri=sys.argv[1]); print('open', flush=True); "
         "sys.stdin.read()", str(held)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StoreError, match="another process"):
            delete_collection(make_settings(store="milvus", milvus_uri=str(held)), "manuals")
        assert (folder / MILVUS_MARKER).is_file()  # refused before anything went
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)

    delete_collection(settings, "manuals")
    db = backend_module._milvus(StoreConfig(kind="milvus", milvus_uri=milvus_uri))
    assert not folder.exists() and not any(db.has(part) for part in (name, f"{name}_meta", f"{name}_second"))


def test_a_copy_is_named_like_any_collection(tmp_path):
    """``--to`` names a folder under the collections: ``../x`` would have put one outside them."""
    done = kb(tmp_path / "home", "collections", "--copy-to", "milvus", "--to", "../x", KB_MILVUS_URI=str(tmp_path / "milvus.db"))
    assert done.returncode == 2 and "is not a collection name" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "x").exists()
