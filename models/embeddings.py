"""Sentence embeddings through sentence-transformers, plus the float32 blob format
the store keeps them in.

Only numpy is imported at module level: the engine and the store can use
``to_blob``/``from_blob`` without pulling in torch.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Embedder, ModelInfo
from .errors import ModelLoadError, ModelNotFoundError
from .registry import DEFAULT_EMBEDDER_ID, default_embedder_path

BLOB_DTYPE = np.dtype("<f4")
"""Embeddings are stored as little-endian float32, row after row."""


def to_blob(vec: np.ndarray) -> bytes:
    """One embedding as little-endian float32 bytes."""
    return np.ascontiguousarray(vec, dtype=BLOB_DTYPE).tobytes()


def from_blob(blob: bytes, dim: int) -> np.ndarray:
    """The float32 vector of length ``dim`` stored by ``to_blob``."""
    if len(blob) != dim * BLOB_DTYPE.itemsize:
        raise ValueError(
            f"embedding blob has {len(blob)} bytes, expected {dim * BLOB_DTYPE.itemsize} "
            f"for {dim} float32 values"
        )
    return np.frombuffer(blob, dtype=BLOB_DTYPE).astype(np.float32)


def embedder_id(path: Path) -> str:
    """A stable id for a sentence-transformers folder: its name (the parent's for 'model')."""
    try:
        if path.resolve() == default_embedder_path().resolve():
            return DEFAULT_EMBEDDER_ID
    except ModelNotFoundError:
        pass
    name = path.name
    if name in {"model", "models", "snapshot", ""} and path.parent.name:
        name = path.parent.name
    return name


DEVICE_ENV = "DPL_EMBEDDER_DEVICE"
"""Where the embedder runs ('cpu', 'cuda' or 'cuda:N'), when set; else chosen by what torch sees."""


def embedding_device(cuda_devices: int | None = None) -> str:
    """``$DPL_EMBEDDER_DEVICE`` when set, else the first CUDA GPU torch sees, else the CPU.

    ``cuda_devices`` is how many GPUs torch sees (asked from torch when None). An unknown
    device name, or a GPU that is not there, raises ``ModelLoadError`` naming the value."""
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    chosen = os.environ.get(DEVICE_ENV, "").strip().lower()
    if not chosen:
        return "cuda" if cuda_devices > 0 else "cpu"
    if chosen == "cpu":
        return chosen
    match = re.fullmatch(r"cuda(?::(\d+))?", chosen)
    if match is None:
        raise ModelLoadError(
            f"${DEVICE_ENV}={chosen!r} is not a device: use 'cpu', 'cuda' or 'cuda:N', or unset it."
        )
    index = int(match.group(1) or 0)
    if index >= cuda_devices:
        seen = (
            f"torch sees {cuda_devices} CUDA GPU(s)" if cuda_devices else "torch sees no CUDA GPU"
        )
        raise ModelLoadError(
            f"${DEVICE_ENV}={chosen!r} asks for a GPU that is not there ({seen}): "
            "use 'cpu' or unset it."
        )
    return chosen


class SentenceTransformerEmbedder(Embedder):
    """A local sentence-transformers model, on a CUDA GPU when torch sees one, else on the CPU;
    rows come back L2-normalised."""

    def __init__(self, model: object, info: ModelInfo, dim: int) -> None:
        self.model = model
        self.info = info
        self.dim = dim
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(  # type: ignore[attr-defined]
                texts,
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim)


def _quiet_transformers() -> None:
    """No progress bars or load chatter on the terminal the app draws on."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except (ImportError, AttributeError):
        pass


def load_embedder(path: str | Path | None = None) -> SentenceTransformerEmbedder:
    """Load a sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2).

    Works offline: the Hugging Face hub is never contacted."""
    folder = Path(path).expanduser() if path is not None else default_embedder_path()
    if not folder.exists():
        raise ModelNotFoundError(
            f"Embedding model folder {str(folder)!r} does not exist. Check the path, or leave "
            "it unset to use the bundled all-MiniLM-L6-v2."
        )
    if not folder.is_dir() or not (folder / "config.json").exists():
        raise ModelLoadError(
            f"{str(folder)!r} is not a sentence-transformers model folder (no config.json). "
            "Pass the folder that holds config.json and modules.json."
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    _quiet_transformers()
    device = embedding_device()
    try:
        model = SentenceTransformer(str(folder), device=device, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any load failure becomes one readable error
        raise ModelLoadError(
            f"Could not load the embedding model in {str(folder)!r}: {err}. Check that the "
            "folder is a complete sentence-transformers model."
        ) from None
    get_dim = getattr(model, "get_embedding_dimension", None)
    if get_dim is None:
        get_dim = model.get_sentence_embedding_dimension
    dim = int(get_dim())
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    info = ModelInfo(model_id=embedder_id(folder), path=str(folder), size_bytes=size, device=device)
    return SentenceTransformerEmbedder(model, info, dim)
