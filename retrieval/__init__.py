"""Embedders, the on-disk collection (FAISS) and the reranking second stage."""
