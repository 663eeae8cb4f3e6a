"""Model backends: GGUF text generation through llama.cpp, sentence-transformers embeddings,
and LLM servers that speak the OpenAI chat completions API.

Importing this package is cheap: llama_cpp, torch, sentence_transformers and openai
are imported only when a model is loaded or a server is connected.
"""

from .base import (
    ChatMessage,
    Embedder,
    GenerationStats,
    ModelInfo,
    SamplingParams,
    TextGenerator,
    TextStream,
)
from .errors import (
    ContextOverflowError,
    CorruptModelError,
    GenerationCancelled,
    GpuFallbackWarning,
    ModelError,
    ModelLoadError,
    ModelNotFoundError,
    NotGGUFError,
    ServerAuthError,
    ServerContextError,
    ServerError,
    ServerModelError,
    ServerStreamError,
    ServerUnreachableError,
    StructuredOutputError,
)

__all__ = [
    "ChatMessage",
    "ContextOverflowError",
    "CorruptModelError",
    "Embedder",
    "GenerationCancelled",
    "GpuFallbackWarning",
    "GenerationStats",
    "ModelError",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotGGUFError",
    "SamplingParams",
    "ServerAuthError",
    "ServerContextError",
    "ServerError",
    "ServerModelError",
    "ServerStreamError",
    "ServerUnreachableError",
    "StructuredOutputError",
    "TextGenerator",
    "TextStream",
]
# Loaders (each imports its heavy library when called):
#   models.llama.load_generator(path=None, *, n_ctx=None, n_gpu_layers=None, flash_attn=None,
#       verbose=False) -> LlamaGenerator
#   models.embeddings.load_embedder(path=None) -> SentenceTransformerEmbedder
#   models.embeddings.to_blob(vec) -> bytes; from_blob(blob, dim) -> np.ndarray
#   models.registry.default_gguf_path(), default_embedder_path(), inspect_gguf(path)
#   models.server.connect(ServerConfig) -> ServerGenerator; connect_embedder(ServerConfig)
#   models.gpu.planned_state(block_count), planned_settings(state), choose_load_settings(
#       offloading, flash_attn=None), supports_gpu_offload(), nvidia_devices()
