"""Files to pages to chunks: loaders and the token-aware chunker."""
