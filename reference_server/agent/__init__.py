"""The pydantic-ai agent behind the server: an offline deterministic model by default."""
