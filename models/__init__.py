"""Model backends: GGUF text generation through llama.cpp and sentence-transformers embeddings.

Importing this package is cheap: llama_cpp, torch and sentence_transformers are
imported only when a model is loaded.
"""

from .base import ChatMessage, Embedder, GenerationStats, ModelInfo, SamplingParams, TextGenerator, TextStream
from .errors import (
    ContextOverflowError,
    CorruptModelError,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    NotGGUFError,
    StructuredOutputError,
)

__all__ = [
    "ChatMessage",
    "ContextOverflowError",
    "CorruptModelError",
    "Embedder",
    "GenerationStats",
    "ModelError",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotGGUFError",
    "SamplingParams",
    "StructuredOutputError",
    "TextGenerator",
    "TextStream",
]
# Loaders (implemented in models/llama.py, models/embeddings.py, models/registry.py):
#   models.llama.load_generator(path: str | Path | None = None, *, n_ctx: int | None = None,
#       n_gpu_layers: int | None = None, flash_attn: bool = False) -> TextGenerator
#   models.embeddings.load_embedder(path: str | Path | None = None) -> Embedder
#   models.registry.default_gguf_path() -> Path; default_embedder_path() -> Path
