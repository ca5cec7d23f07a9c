"""The on-disk collection: round trips, embedder checks, atomic saves, the write lock."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.types import Chunk
from retrieval import generations as generations_module
from retrieval import store as store_module
from retrieval.embedders import EmbedderIdentity
from retrieval.store import (
    Collection,
    CollectionLockedError,
    CollectionMissingError,
    IndexMismatchError,
    WriteLock,
)

IDENTITY = EmbedderIdentity(name="test-embedder", dim=8, fingerprint="v1")


def chunks_for(source: str, count: int) -> list[Chunk]:
    return [Chunk(source, 1, (), i * 10, i * 10 + 5, f"{source} text {i}") for i in range(count)]


def unit_vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, IDENTITY.dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_round_trip_search_replace_and_remove(tmp_path):
    collection = Collection.open(tmp_path, IDENTITY, create=True)
    a_vectors, b_vectors = unit_vectors(3, 1), unit_vectors(2, 2)
    collection.put_file("a.md", "sha-a", chunks_for("a.md", 3), a_vectors, pages=1)
    collection.put_file("b.md", "sha-b", chunks_for("b.md", 2), b_vectors, pages=1)
    collection.save()

    reopened = Collection.open(tmp_path, IDENTITY)
    assert reopened.chunk_count == 5
    assert reopened.files["a.md"].content_sha256 == "sha-a"
    best = reopened.search(b_vectors[1], k=2)[0]
    assert best.chunk.text == "b.md text 1"
    assert best.first_stage_score == pytest.approx(1.0, abs=1e-5)

    reopened.put_file("a.md", "sha-a2", chunks_for("a.md", 1), unit_vectors(1, 3), pages=1)  # replaced
    assert reopened.remove_file("b.md")
    reopened.save()
    final = Collection.open(tmp_path, IDENTITY)
    assert final.chunk_count == 1
    assert set(final.files) == {"a.md"}
    assert final.search(b_vectors[1], k=5)[0].chunk.source == "a.md"


def test_written_files_are_json_and_faiss_never_pickle(tmp_path):
    collection = Collection.open(tmp_path, IDENTITY, create=True)
    collection.put_file("a.md", "sha", chunks_for("a.md", 2), unit_vectors(2, 0), pages=1)
    generation = collection.save()
    folder = tmp_path / generation
    assert sorted(p.name for p in folder.iterdir()) == [
        "chunks.jsonl", "keyword_terms.json", "keywords.npz", "manifest.json", "vectors.faiss"
    ]
    with np.load(folder / "keywords.npz", allow_pickle=False) as arrays:  # would raise on object arrays
        assert sorted(arrays.files) == ["chunk_ids", "counts", "offsets", "term_ids"]
    json.loads((folder / "keyword_terms.json").read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == store_module.FORMAT_VERSION
    assert manifest["embedder"] == {"name": "test-embedder", "dim": 8, "fingerprint": "v1"}
    for line in (folder / "chunks.jsonl").read_text().splitlines():
        json.loads(line)


def test_opening_with_another_embedder_is_a_clear_error(tmp_path):
    collection = Collection.open(tmp_path, IDENTITY, create=True)
    collection.put_file("a.md", "sha", chunks_for("a.md", 1), unit_vectors(1, 0), pages=1)
    collection.save()
    other = EmbedderIdentity(name="other-model", dim=8, fingerprint="v9")
    with pytest.raises(IndexMismatchError, match="test-embedder.*other-model"):
        Collection.open(tmp_path, other)


def test_missing_collection_says_how_to_fill_it(tmp_path):
    with pytest.raises(CollectionMissingError, match="kb ingest"):
        Collection.open(tmp_path / "nothing", IDENTITY)


def test_crash_during_save_leaves_the_previous_generation_live(tmp_path, monkeypatch):
    collection = Collection.open(tmp_path, IDENTITY, create=True)
    collection.put_file("a.md", "sha-a", chunks_for("a.md", 2), unit_vectors(2, 0), pages=1)
    collection.save()

    collection.put_file("b.md", "sha-b", chunks_for("b.md", 2), unit_vectors(2, 1), pages=1)

    def crash(*args, **kwargs):  # the process dies between writing the new files and committing them
        raise OSError("disk full")

    monkeypatch.setattr(generations_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        collection.save()
    monkeypatch.undo()

    survivor = Collection.open(tmp_path, IDENTITY)
    assert set(survivor.files) == {"a.md"}
    assert survivor.chunk_count == 2
    survivor.put_file("c.md", "sha-c", chunks_for("c.md", 1), unit_vectors(1, 2), pages=1)
    survivor.save()  # the next save cleans up and works
    assert set(Collection.open(tmp_path, IDENTITY).files) == {"a.md", "c.md"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]


def test_second_writer_is_refused(tmp_path):
    with WriteLock(tmp_path):
        with pytest.raises(CollectionLockedError, match="another ingest"):
            with WriteLock(tmp_path):
                pass
    with WriteLock(tmp_path):  # released again
        pass


def test_large_collection_switches_to_ivf_and_back_keeping_every_chunk(tmp_path):
    # A tiny threshold forces the rare path; recall is measured in benchmarks/bench_index.py.
    collection = Collection.open(tmp_path, IDENTITY, create=True, exact_up_to=300)
    for n in range(4):
        collection.put_file(f"f{n}.md", "sha", chunks_for(f"f{n}.md", 100), unit_vectors(100, n), pages=1)
    collection.save()
    assert collection.index_kind == "ivf"
    reopened = Collection.open(tmp_path, IDENTITY, exact_up_to=300)
    assert reopened.index_kind == "ivf" and reopened.chunk_count == 400
    probe = unit_vectors(100, 2)[7]
    best_id, best_score = reopened.search_dense(probe, k=1)[0]
    assert reopened.chunk(best_id).text == "f2.md text 7" and best_score == pytest.approx(1.0, abs=1e-5)
    assert reopened.dense_scores(probe, [best_id])[0] == pytest.approx(1.0, abs=1e-5)
    reopened.remove_file("f2.md")  # IVF deletes in place, no rebuild
    assert all(reopened.chunk(i).source != "f2.md" for i, _ in reopened.search_dense(probe, k=20))
    for n in (0, 1, 3):
        reopened.remove_file(f"f{n}.md")
    reopened.put_file("g.md", "sha", chunks_for("g.md", 5), unit_vectors(5, 9), pages=1)
    reopened.save()
    assert reopened.index_kind == "exact"  # below half the threshold again
    assert Collection.open(tmp_path, IDENTITY, exact_up_to=300).chunk_count == 5


SECOND = EmbedderIdentity(name="second-embedder", dim=8, fingerprint="s1")


def test_second_vectors_round_trip_and_are_dropped_for_another_second_model(tmp_path):
    collection = Collection.open(tmp_path, IDENTITY, create=True, second_identity=SECOND)
    second_a = unit_vectors(3, 7)
    collection.put_file("a.md", "sha-a", chunks_for("a.md", 3), unit_vectors(3, 1), 1, second_vectors=second_a)
    collection.put_file("b.md", "sha-b", chunks_for("b.md", 2), unit_vectors(2, 2), 1)  # none for b yet
    assert not collection.has_second_vectors
    missing = collection.missing_second_vectors()
    assert [collection.chunk(i).source for i in missing] == ["b.md", "b.md"]
    collection.put_second_vectors(missing, unit_vectors(2, 8))
    assert collection.has_second_vectors and collection.missing_second_vectors() == []
    collection.save()

    reopened = Collection.open(tmp_path, IDENTITY, second_identity=SECOND)
    assert reopened.has_second_vectors
    a_ids = list(reopened.files["a.md"].chunk_ids)
    assert reopened.second_scores(second_a[1], a_ids)[1] == pytest.approx(1.0, abs=1e-5)
    reopened.remove_file("a.md")
    assert reopened.has_second_vectors  # b's stay, a's went with a

    other = EmbedderIdentity(name="another-second", dim=8, fingerprint="x")
    switched = Collection.open(tmp_path, IDENTITY, second_identity=other)  # not an error: recomputed at ingest
    assert switched.chunk_count == 5 and not switched.has_second_vectors
    assert len(switched.missing_second_vectors()) == 5
    without = Collection.open(tmp_path, IDENTITY)
    assert without.missing_second_vectors() == [] and not without.has_second_vectors
    with pytest.raises(ValueError, match="without a second embedder"):
        without.second_scores(second_a[0], a_ids)
