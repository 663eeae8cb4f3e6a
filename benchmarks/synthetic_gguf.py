"""A llama-architecture GGUF of a chosen shape with random Q4_0 weights, made offline.

No 7B weights can reach a GPU machine that has no network, and the transfer to it is capped
far below 4 GB, but the speed of a 7B Q4_0 model depends on its shape and type, not on what
its weights learned. This writes such a file on the machine itself: the tokenizer and chat
template are copied from the bundled model (so dpl's prompts tokenize and format as usual),
the big matrices are random Q4_0 blocks made directly as bytes (an fp16 scale and 16 random
bytes per 32 weights, no float32 quantization of billions of floats), the norms are ones.
Tensors are generated and written one at a time, so memory stays at one tensor (about 100 MB
for a 7B). Its text is noise; its speed is that of a real model of the shape.

    python -m benchmarks.synthetic_gguf OUT.gguf [--layers 28 --hidden 3584 --heads 28
        --kv-heads 4 --ffn 18944 --ctx 32768 --seed 0]

The defaults are Qwen2.5-7B's shape (3.87 GB with the bundled 49,152-token vocabulary).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

Q4_0_BLOCK = 32
"""Weights per Q4_0 block."""
Q4_0_BYTES = 18
"""Bytes per Q4_0 block: an fp16 scale, then 32 four-bit values."""
Q4_0_RMS = 4.64
"""Root mean square of a uniform Q4_0 value (q - 8, q in 0..15), in units of the scale."""
LLAMA_FTYPE_MOSTLY_Q4_0 = 2


@dataclass(frozen=True)
class Shape:
    """The dimensions of a llama-architecture transformer (defaults: Qwen2.5-7B)."""

    layers: int = 28
    hidden: int = 3584
    heads: int = 28
    """Query heads."""
    kv_heads: int = 4
    """Key/value heads (grouped-query attention)."""
    ffn: int = 18944
    ctx: int = 32768
    """The training context written to the header (``llama.context_length``)."""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def check(self) -> None:
        """Raise ValueError when llama.cpp could not load a model of this shape."""
        problems = []
        for name in ("layers", "hidden", "heads", "kv_heads", "ffn", "ctx"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1")
        if problems:
            raise ValueError("; ".join(problems))
        if self.hidden % self.heads or self.head_dim % 2:
            problems.append(
                f"--hidden {self.hidden} must be an even multiple of --heads {self.heads}"
            )
        if self.heads % self.kv_heads:
            problems.append(
                f"--heads {self.heads} must be a multiple of --kv-heads {self.kv_heads}"
            )
        for name in ("hidden", "ffn"):
            if getattr(self, name) % Q4_0_BLOCK:
                problems.append(f"--{name} {getattr(self, name)} must be a multiple of 32 (Q4_0)")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class Written:
    """What ``write_synthetic_gguf`` wrote."""

    path: Path
    size_bytes: int
    parameters: int
    tensors: int
    seconds: float


def tensor_plan(shape: Shape, vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor, in llama.cpp's names and order. A matrix is
    (rows, cols) with cols the input dimension, along which Q4_0 blocks run; 1-D are norms."""
    h, kv = shape.hidden, shape.kv_heads * shape.head_dim
    plan: list[tuple[str, tuple[int, ...]]] = [
        ("token_embd.weight", (vocab, h)),
        ("output_norm.weight", (h,)),
        ("output.weight", (vocab, h)),
    ]
    for i in range(shape.layers):
        plan += [
            (f"blk.{i}.attn_norm.weight", (h,)),
            (f"blk.{i}.attn_q.weight", (h, h)),
            (f"blk.{i}.attn_k.weight", (kv, h)),
            (f"blk.{i}.attn_v.weight", (kv, h)),
            (f"blk.{i}.attn_output.weight", (h, h)),
            (f"blk.{i}.ffn_norm.weight", (h,)),
            (f"blk.{i}.ffn_gate.weight", (shape.ffn, h)),
            (f"blk.{i}.ffn_up.weight", (shape.ffn, h)),
            (f"blk.{i}.ffn_down.weight", (h, shape.ffn)),
        ]
    return plan


def random_q4_0(rng, rows: int, cols: int):
    """A (rows, cols / 32 * 18) uint8 array of Q4_0 blocks: random four-bit values and fp16
    scales spread over 0.5-1.5 times 1 / (4.64 sqrt(cols)), so each output has about unit
    variance for unit inputs, as in an initialised network."""
    import numpy as np

    blocks = rows * (cols // Q4_0_BLOCK)
    data = rng.integers(0, 256, size=(blocks, Q4_0_BYTES), dtype=np.uint8)
    base = 1.0 / (Q4_0_RMS * cols**0.5)
    # positive fp16 bit patterns order like their values, so random patterns between two
    # bounds are random scales between them
    lo, hi = np.array([0.5 * base, 1.5 * base], dtype=np.float16).view(np.uint16)
    data.view(np.uint16)[:, 0] = rng.integers(lo, hi, size=blocks, dtype=np.uint16)
    return data.reshape(rows, cols // Q4_0_BLOCK * Q4_0_BYTES)


def tokenizer_fields(source: Path) -> Iterator[tuple[str, object, object, object]]:
    """(key, value, type, item type) of every ``tokenizer.*`` key of the GGUF at ``source``
    (vocabulary, merges, special tokens, chat template)."""
    import gguf

    reader = gguf.GGUFReader(source)
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        yield key, field.contents(), vtype, sub_type


def write_synthetic_gguf(
    out: str | Path,
    shape: Shape = Shape(),
    *,
    seed: int = 0,
    tokenizer_from: str | Path | None = None,
) -> Written:
    """Write a llama GGUF of ``shape`` with random Q4_0 weights to ``out``; the tokenizer comes
    from ``tokenizer_from`` (default: the bundled model). The file appears under its name only
    when complete (written beside it as ``.partial``, then renamed).

    Raises ValueError for a shape llama.cpp cannot load."""
    import gguf
    import numpy as np

    from models.registry import default_gguf_path

    shape.check()
    start = time.perf_counter()
    out = Path(out).expanduser()
    source = Path(tokenizer_from) if tokenizer_from is not None else default_gguf_path()
    fields = list(tokenizer_fields(source))
    tokens = next(v for k, v, _, _ in fields if k == "tokenizer.ggml.tokens")
    vocab = len(tokens)  # type: ignore[arg-type]

    partial = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(partial, "llama")
    writer.add_type("model")
    writer.add_name(f"synthetic llama {shape.layers}x{shape.hidden} (random Q4_0)")
    writer.add_context_length(shape.ctx)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab)
    writer.add_file_type(LLAMA_FTYPE_MOSTLY_Q4_0)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for key, value, vtype, sub_type in fields:
        writer.add_key_value(key, value, vtype, sub_type=sub_type)

    plan = tensor_plan(shape, vocab)
    parameters = 0
    for name, dims in plan:
        parameters += int(np.prod(dims))
        if len(dims) == 1:
            writer.add_tensor_info(name, dims, np.dtype(np.float32), dims[0] * 4)
        else:
            rows, cols = dims
            byte_shape = (rows, cols // Q4_0_BLOCK * Q4_0_BYTES)
            writer.add_tensor_info(
                name, byte_shape, np.dtype(np.uint8), rows * byte_shape[1],
                raw_dtype=gguf.GGMLQuantizationType.Q4_0,
            )  # fmt: skip
    rng = np.random.default_rng(seed)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, dims in plan:
            if len(dims) == 1:
                writer.write_tensor_data(np.ones(dims, dtype=np.float32))
            else:
                writer.write_tensor_data(random_q4_0(rng, *dims))
        writer.close()
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, out)
    return Written(
        path=out,
        size_bytes=out.stat().st_size,
        parameters=parameters,
        tensors=len(plan),
        seconds=time.perf_counter() - start,
    )


def main(argv: list[str] | None = None) -> int:
    defaults = Shape()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synthetic_gguf",
        description="Write a llama GGUF with random Q4_0 weights (default: Qwen2.5-7B's shape) "
        "and the bundled model's tokenizer, to time a model of that size offline.",
    )
    parser.add_argument("out", type=Path, help="the GGUF file to write")
    parser.add_argument("--layers", type=int, default=defaults.layers)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--heads", type=int, default=defaults.heads, help="query heads")
    parser.add_argument("--kv-heads", type=int, default=defaults.kv_heads)
    parser.add_argument("--ffn", type=int, default=defaults.ffn, help="feed-forward width")
    parser.add_argument("--ctx", type=int, default=defaults.ctx, help="training context")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer-from", type=Path, default=None,
        help="GGUF whose tokenizer and chat template are copied (default: the bundled model)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    shape = Shape(args.layers, args.hidden, args.heads, args.kv_heads, args.ffn, args.ctx)
    try:
        shape.check()
    except ValueError as err:
        parser.error(str(err))
    from models.errors import ModelError

    try:
        done = write_synthetic_gguf(
            args.out, shape, seed=args.seed, tokenizer_from=args.tokenizer_from
        )
    except ModelError as err:
        print(f"synthetic_gguf: {err}", file=sys.stderr)
        return 1
    print(
        f"wrote {done.path}: {done.size_bytes / 1e9:.2f} GB ({done.size_bytes:,} bytes), "
        f"{done.parameters / 1e9:.2f}B parameters in {done.tensors} tensors, "
        f"{done.seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
