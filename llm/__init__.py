"""Local generation: model files, llama.cpp, prompt building and citations."""
