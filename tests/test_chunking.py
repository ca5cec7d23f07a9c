"""Token-aware chunking with the default embedder's own tokenizer."""

from __future__ import annotations

import re

import pytest

from ingest.chunking import Chunker
from core.types import Page

CHINESE = (
    "知识库问答系统需要把长文档切成小段。每一段都要记住它来自哪个文件和哪一页！"
    "切分时应该在句号、问号或者分号处断开；这样每段话的意思才完整？"
    "如果一句话特别长而且没有任何标点符号那么只能在两个汉字之间断开这种情况在扫描件里很常见"
) * 6
ENGLISH = (
    "Retrieval augmented generation answers questions from your own documents. "
    "Each passage remembers the file and the page it came from, so every answer can cite it! "
    "Splitting happens at sentence ends; words like internationalization are never cut in half? "
) * 8


def test_chinese_chunks_respect_size_offsets_and_sentence_ends(e5):
    chunker = Chunker(e5.count_tokens, chunk_tokens=64, overlap_tokens=8)
    chunks = chunker.chunk([Page(source="zh.md", page=None, text=CHINESE, start_char=10)])
    assert len(chunks) > 3
    for chunk in chunks:
        assert e5.count_tokens(chunk.text) <= 64
        assert CHINESE[chunk.start_char - 10 : chunk.end_char - 10] == chunk.text
    # Most chunks end at a Chinese sentence mark; the punctuation-free run may end between characters.
    ends = [chunk.text[-1] for chunk in chunks]
    assert sum(end in "。！？；" for end in ends) >= len(chunks) // 2


def test_english_words_are_never_cut(e5):
    chunker = Chunker(e5.count_tokens, chunk_tokens=40, overlap_tokens=8)
    chunks = chunker.chunk([Page(source="en.pdf", page=4, text=ENGLISH)])
    assert len(chunks) > 5
    vocabulary = set(re.findall(r"[A-Za-z]+", ENGLISH))
    for chunk in chunks:
        assert chunk.page == 4
        assert ENGLISH[chunk.start_char : chunk.end_char] == chunk.text
        assert set(re.findall(r"[A-Za-z]+", chunk.text)) <= vocabulary  # no half words
        assert e5.count_tokens(chunk.text) <= 40


def test_neighbouring_chunks_overlap_by_whole_sentences(e5):
    # Overlap is made of whole pieces (sentences here), never of half sentences.
    text = " ".join(f"Fact number {i} is short." for i in range(40))
    chunker = Chunker(e5.count_tokens, chunk_tokens=40, overlap_tokens=16)
    chunks = chunker.chunk([Page(source="en.md", page=None, text=text)])
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if b.start_char < a.end_char)
    assert overlapping >= len(chunks) // 2


def test_heading_path_is_part_of_what_gets_embedded(e5):
    page = Page(source="guide.md", page=None, text="Run make run.", heading_path=("Guide", "Install"))
    (chunk,) = Chunker(e5.count_tokens, 64, 0).chunk([page])
    assert chunk.embedding_text == "Guide > Install\nRun make run."
    assert chunk.location == "guide.md › Guide › Install"


@pytest.mark.parametrize("size, overlap", [(8, 0), (64, 64), (64, -1)])
def test_impossible_sizes_are_rejected(e5, size, overlap):
    with pytest.raises(ValueError):
        Chunker(e5.count_tokens, size, overlap)
