"""The ASP v1 reference server: FastAPI + uvicorn + pydantic-ai, every production pattern of the spec."""

__version__ = "0.1.0"
