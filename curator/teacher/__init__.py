"""The teacher: an OpenAI-compatible model that writes synthetic pairs (the embedded llama.cpp server by default)."""
