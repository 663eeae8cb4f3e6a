"""LoRA adapters as llama.cpp loads them: a GGUF file of their own beside the base model.

An adapter file holds ``general.type = adapter``, ``adapter.type = lora``,
``adapter.lora.alpha`` and, per adapted weight, ``<llama.cpp tensor name>.lora_a`` and
``.lora_b``. dpl adds one key, ``dpl.adapter``: a JSON object with the base model's id
and everything that made the adapter (split, method, teacher, options, final loss), so
the file alone says what it is for. The header is read here before llama.cpp sees the
file, so a truncated file, a model passed as an adapter or an adapter for another base
gets a readable one-line error instead of a native failure.

Writing uses the ``gguf`` package; nothing heavy is imported at module level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, NotGGUFError
from .registry import GGUFInfo, inspect_gguf

META_KEY = "dpl.adapter"

# llama.cpp's converter reorders the rows of the query and key projections of these
# architectures (it interleaves the two rotary halves of each head); a LoRA's B matrix,
# whose rows are the projection's outputs, must be reordered the same way.
ROPE_PERMUTED = frozenset({"llama"})


class AdapterError(ModelError):
    """An adapter file cannot be used (not an adapter, cut short, made for another base)."""


@dataclass(frozen=True)
class AdapterInfo:
    """What an adapter file's header says."""

    path: str
    size_bytes: int
    alpha: float
    rank: int
    tensors: int
    architecture: str
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    """dpl's record of how it was made; empty for adapters made elsewhere."""

    @property
    def base_model_id(self) -> str:
        """The id (file name and size) of the GGUF it was trained on; '' when unknown."""
        return str(self.meta.get("base_model_id", ""))

    @property
    def adapter_id(self) -> str:
        """A short stable id: dpl's training digest, else the file name and size."""
        digest = self.meta.get("digest")
        name = self.meta.get("name") or Path(self.path).stem
        return f"{name}@{digest[:12]}" if digest else f"{Path(self.path).name}:{self.size_bytes}"


def inspect_adapter(path: str | Path) -> AdapterInfo:
    """Read and check an adapter file's header.

    Raises ModelNotFoundError, NotGGUFError (a folder), CorruptModelError (cut short) or
    AdapterError (not a GGUF, a GGUF that is a model, or a LoRA without its tensors)."""
    path = Path(path).expanduser()
    try:
        info = inspect_gguf(path)
    except NotGGUFError as err:
        if path.is_dir():
            raise
        raise AdapterError(
            f"{str(path)!r} is not a LoRA adapter (not a GGUF file at all). Pass an adapter made "
            "by `dpl tune`, or convert a PEFT adapter with llama.cpp's convert_lora_to_gguf.py."
        ) from err
    kind = info.metadata.get("general.type")
    if kind != "adapter" or info.metadata.get("adapter.type") != "lora":
        what = f"general.type = {kind!r}" if kind else "no general.type"
        raise AdapterError(
            f"{str(path)!r} is not a LoRA adapter ({what}; it looks like a model). Pass an "
            "adapter made by `dpl tune`, or give this file to --model instead."
        )
    alpha = info.metadata.get("adapter.lora.alpha", 0.0)
    meta_text = info.metadata.get(META_KEY)
    meta: dict[str, Any] = {}
    if isinstance(meta_text, str):
        try:
            loaded = json.loads(meta_text)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            meta = loaded
    if info.tensor_count == 0:
        raise AdapterError(f"Adapter {str(path)!r} holds no tensors. Train it again (dpl tune).")
    return AdapterInfo(
        path=str(path),
        size_bytes=info.size_bytes,
        alpha=float(alpha) if isinstance(alpha, (int, float)) else 0.0,
        rank=int(meta.get("options", {}).get("rank", 0)) if meta else 0,
        tensors=info.tensor_count,
        architecture=info.architecture,
        meta=meta,
    )


def check_base(adapter: AdapterInfo, base: GGUFInfo) -> None:
    """Refuse an adapter trained on another base model, naming both."""
    wanted = adapter.base_model_id
    if wanted and wanted != base.model_id:
        raise AdapterError(
            f"Adapter {adapter.path!r} was trained for base model {wanted!r}, not "
            f"{base.model_id!r}. Pass --model with that base, or train an adapter for this "
            "one with `dpl tune --model`."
        )
    if adapter.architecture and base.architecture and adapter.architecture != base.architecture:
        raise AdapterError(
            f"Adapter {adapter.path!r} is for the {adapter.architecture!r} architecture, but "
            f"{base.model_id!r} is {base.architecture!r}. Pass the base it was trained on."
        )


def permute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder a projection's output rows the way llama.cpp's converter does for rotary heads:
    within each head, the two halves are interleaved."""
    out = rows.shape[0]
    return (
        rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def gguf_tensor_name(hf_module: str, architecture: str, block_count: int) -> str:
    """llama.cpp's name for a transformers module path ('model.layers.0.self_attn.q_proj'
    becomes 'blk.0.attn_q.weight'), from the ``gguf`` package's own name map."""
    import gguf

    arch = {name: value for value, name in gguf.MODEL_ARCH_NAMES.items()}.get(architecture)
    if arch is None:
        raise AdapterError(f"The gguf package does not know the architecture {architecture!r}.")
    mapped = gguf.get_tensor_name_map(arch, block_count).get_name(hf_module + ".weight",
                                                                  try_suffixes=(".weight",))
    if mapped is None:
        raise AdapterError(f"No llama.cpp tensor name for {hf_module!r} ({architecture}).")
    return mapped


@contextmanager
def gguf_file(path: str | Path, architecture: str) -> Iterator[Any]:
    """A ``gguf.GGUFWriter`` to fill with keys and tensors; the file is written beside
    ``path`` and moved into place only when complete, so a failure never leaves half a
    file where a model or adapter is expected."""
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), architecture)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(tmp, path)


def write_adapter(
    path: str | Path,
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    alpha: float,
    architecture: str,
    block_count: int,
    n_head: int,
    n_head_kv: int,
    meta: Mapping[str, Any],
) -> Path:
    """Write LoRA pairs as a llama.cpp adapter GGUF.

    ``pairs`` maps a transformers module path to its (A, B) in PEFT's layout: A is
    (rank, in), B is (out, rank). The file is written beside ``path`` and moved into
    place when complete, so an interrupted export never leaves half a file."""
    import gguf

    with gguf_file(path, architecture) as writer:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
        writer.add_string(META_KEY, json.dumps(dict(meta), sort_keys=True))
        for module, (a, b) in sorted(pairs.items()):
            name = gguf_tensor_name(module, architecture, block_count)
            if architecture in ROPE_PERMUTED:
                if name.endswith("attn_q.weight"):
                    b = permute_rows(b, n_head)
                elif name.endswith("attn_k.weight"):
                    b = permute_rows(b, n_head_kv)
            writer.add_tensor(name + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
            writer.add_tensor(name + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    return Path(path)


def unpermute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of ``permute_rows``: llama.cpp's row order back to transformers'."""
    out = rows.shape[0]
    return (
        rows.reshape(n_head, out // n_head // 2, 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def read_adapter(
    path: str | Path,
    modules: list[str],
    *,
    architecture: str,
    block_count: int,
    n_head: int,
    n_head_kv: int,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """An adapter file's LoRA pairs in PEFT's layout, keyed by transformers module path:
    what ``write_adapter`` wrote, read back. ``modules`` are the base model's module paths
    (``model.layers.0.self_attn.q_proj``, ...), which give llama.cpp's names their meaning.

    Raises AdapterError when the file holds a tensor none of ``modules`` maps to."""
    import gguf

    path = Path(path).expanduser()
    by_name: dict[str, str] = {}
    for module in modules:
        try:
            by_name[gguf_tensor_name(module, architecture, block_count)] = module
        except AdapterError:
            continue
    reader = gguf.GGUFReader(str(path))
    parts: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        name, _, kind = tensor.name.rpartition(".")
        module = by_name.get(name)
        if module is None or kind not in ("lora_a", "lora_b"):
            raise AdapterError(
                f"Adapter {str(path)!r} holds tensor {tensor.name!r}, which this base model "
                "has no weight for. Pass the base the adapter was trained on."
            )
        parts.setdefault(module, {})[kind] = np.array(tensor.data, dtype=np.float32)
    pairs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for module, got in parts.items():
        if set(got) != {"lora_a", "lora_b"}:
            raise AdapterError(f"Adapter {str(path)!r} has half a LoRA pair for {module!r}.")
        a, b = got["lora_a"], got["lora_b"]
        name = gguf_tensor_name(module, architecture, block_count)
        if architecture in ROPE_PERMUTED:
            if name.endswith("attn_q.weight"):
                b = unpermute_rows(b, n_head)
            elif name.endswith("attn_k.weight"):
                b = unpermute_rows(b, n_head_kv)
        pairs[module] = (a, b)
    return pairs


MERGED_KEY = "dpl.merged"
"""In a merged model: JSON with the adapter's id and record, the base's id and path."""


def merged_record(path: str | Path) -> dict[str, Any] | None:
    """What a merged model records of its adapter and base; None for any other GGUF (or a
    file that cannot be read: loading it reports why)."""
    try:
        text = inspect_gguf(path).metadata.get(MERGED_KEY)
        record = json.loads(text) if isinstance(text, str) else None
    except (ModelError, OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


FLOAT_TYPES = frozenset({"F32", "F16", "BF16"})


def merged_type(kind: Any) -> Any:
    """The type an adapted weight is stored in once merged: its own when it is a float type,
    else Q8_0. A LoRA's update is far smaller than a 4- or 5-bit type's step, so rounding
    the merged weight back to such a type loses most of it (measured on the bundled Q4_1
    model: the merged model's logit change correlates 0.14-0.23 with the adapter's at run
    time; 0.87-0.97 with Q8_0, 0.93-0.97 with F32)."""
    import gguf

    return kind if kind.name in FLOAT_TYPES else gguf.GGMLQuantizationType.Q8_0


def merge_adapter(base_path: str | Path, adapter_path: str | Path, out_path: str | Path,
                  *, scale: float = 1.0) -> Path:
    """Write a full model: the base GGUF with the adapter folded into its weights.

    Each adapted weight is dequantized, given the adapter's update (``scale * alpha / rank
    * B @ A``, as llama.cpp applies it at run time) and stored as ``merged_type`` chooses;
    every other tensor and every metadata key is copied as it is (except the file type when
    the adapted weights changed type). The merged model decodes
    at the base's rate (an adapter applied at run time costs a share of it), at the price
    of a model file of its own. Written beside ``out_path`` and moved into place when
    complete.

    Raises AdapterError for an adapter made for another base or with a weight the base
    does not have."""
    import gguf
    from gguf import quants

    base_path, out_path = Path(base_path).expanduser(), Path(out_path).expanduser()
    info = inspect_adapter(adapter_path)
    base = inspect_gguf(base_path)
    check_base(info, base)
    lora: dict[str, dict[str, np.ndarray]] = {}
    for tensor in gguf.GGUFReader(info.path).tensors:
        name, _, kind = tensor.name.rpartition(".")
        lora.setdefault(name, {})[kind] = np.array(tensor.data, dtype=np.float32)
    reader = gguf.GGUFReader(str(base_path))
    missing = set(lora) - {t.name for t in reader.tensors}
    if missing:
        raise AdapterError(
            f"Adapter {info.path!r} adapts {sorted(missing)[0]!r}, which {base.model_id!r} "
            "does not have. Pass the base it was trained on."
        )
    skipped = {gguf.Keys.General.ARCHITECTURE, MERGED_KEY}
    if any(merged_type(t.tensor_type) != t.tensor_type for t in reader.tensors if t.name in lora):
        # The base's file type no longer describes the weights: without it, llama.cpp and
        # ``inspect_gguf`` name the type most weights have.
        skipped.add(gguf.Keys.General.FILE_TYPE)
    with gguf_file(out_path, base.architecture) as writer:
        for f in reader.fields.values():
            if f.name.startswith("GGUF.") or f.name in skipped:
                continue
            sub_type = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub_type)
        writer.add_string(MERGED_KEY, json.dumps({
            "adapter_id": info.adapter_id, "adapter": info.meta, "scale": scale,
            "base_model_id": base.model_id, "base_path": str(base_path.resolve()),
        }, sort_keys=True))
        for tensor in reader.tensors:
            pair = lora.get(tensor.name)
            if pair is None:
                writer.add_tensor(tensor.name, tensor.data, raw_dtype=tensor.tensor_type)
                continue
            a, b = pair["lora_a"], pair["lora_b"]
            weight = quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
            weight += (scale * info.alpha / a.shape[0]) * (b @ a)
            kind = merged_type(tensor.tensor_type)
            writer.add_tensor(tensor.name, quants.quantize(weight, kind), raw_dtype=kind)
    return out_path
