"""The bundled all-MiniLM-L6-v2 on real reviews, and the float32 blob format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from models import ModelLoadError, ModelNotFoundError
from models.embeddings import (
    DEVICE_ENV,
    SentenceTransformerEmbedder,
    embedding_device,
    from_blob,
    load_embedder,
    to_blob,
)


def _long_reviews(mi5: Path, n: int) -> list[str]:
    texts = []
    with gzip.open(mi5 / "reviews.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line)["text"]
            if len(text) >= 500:
                texts.append(text)
            if len(texts) == n:
                break
    return texts


@pytest.mark.slow
def test_real_reviews_become_384_dim_unit_vectors(
    bundled_embedder: SentenceTransformerEmbedder, mi5: Path
) -> None:
    texts = _long_reviews(mi5, 40)
    vectors = bundled_embedder.embed(texts, batch_size=16)
    assert bundled_embedder.dim == 384
    assert bundled_embedder.model_id == "all-MiniLM-L6-v2"
    assert vectors.shape == (40, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # batching does not change the result
    again = bundled_embedder.embed(texts[:5], batch_size=2)
    np.testing.assert_allclose(again, vectors[:5], atol=1e-5)


@pytest.mark.slow
def test_halves_of_one_review_are_closer_than_halves_of_others(
    bundled_embedder: SentenceTransformerEmbedder, mi5: Path
) -> None:
    texts = _long_reviews(mi5, 60)
    firsts = [t[: len(t) // 2] for t in texts]
    seconds = [t[len(t) // 2 :] for t in texts]
    a = bundled_embedder.embed(firsts)
    b = bundled_embedder.embed(seconds)
    sims = a @ b.T
    matched = np.diag(sims)
    unmatched = sims[~np.eye(len(texts), dtype=bool)]
    assert matched.mean() > unmatched.mean() + 0.2
    # one right answer among 60 (chance: under 2%); halves of long reviews drift apart,
    # so the bar is "far above chance", and the right half ranks near the top on average
    top1 = (sims.argmax(axis=1) == np.arange(len(texts))).mean()
    ranks = (sims > matched[:, None]).sum(axis=1)
    assert np.median(ranks) <= 2
    assert top1 > 0.25, f"only {top1:.0%} of first halves found their own second half"


@pytest.mark.slow
def test_similar_sentences_score_higher(bundled_embedder: SentenceTransformerEmbedder) -> None:
    v = bundled_embedder.embed(
        [
            "These guitar strings sound bright and stay in tune.",
            "Great strings: a crisp tone that holds its tuning.",
            "The power adapter for my keyboard stopped working.",
        ]
    )
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_empty_input(bundled_embedder: SentenceTransformerEmbedder) -> None:
    out = bundled_embedder.embed([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_blob_round_trip_is_little_endian_float32() -> None:
    vec = np.array([1.5, -2.0, 0.25], dtype=np.float64)
    blob = to_blob(vec)
    assert blob == np.array([1.5, -2.0, 0.25], dtype="<f4").tobytes() and len(blob) == 12
    back = from_blob(blob, 3)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, vec.astype(np.float32))
    with pytest.raises(ValueError, match="12 bytes, expected 16"):
        from_blob(blob, 4)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="gone"):
        load_embedder(tmp_path / "gone")


def test_folder_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_embedder(tmp_path)


@pytest.mark.parametrize(
    ("env", "gpus", "device"),
    [
        (None, 0, "cpu"),
        (None, 2, "cuda"),
        ("cpu", 2, "cpu"),
        (" CUDA:1 ", 2, "cuda:1"),
        ("cuda", 1, "cuda"),
    ],
)
def test_embedder_device_follows_the_gpus_and_the_override(
    monkeypatch: pytest.MonkeyPatch, env: str | None, gpus: int, device: str
) -> None:
    if env is None:
        monkeypatch.delenv(DEVICE_ENV, raising=False)
    else:
        monkeypatch.setenv(DEVICE_ENV, env)
    assert embedding_device(gpus) == device


@pytest.mark.parametrize(
    ("env", "gpus", "message"),
    [
        ("tpu", 1, "'tpu' is not a device: use 'cpu', 'cuda' or 'cuda:N'"),
        ("cuda", 0, "torch sees no CUDA GPU"),
        ("cuda:2", 2, "torch sees 2 CUDA GPU(s)"),
    ],
)
def test_an_impossible_embedder_device_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: str, gpus: int, message: str
) -> None:
    monkeypatch.setenv(DEVICE_ENV, env)
    with pytest.raises(ModelLoadError) as err:
        embedding_device(gpus)
    assert message in str(err.value) and DEVICE_ENV in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_the_real_embedder_runs_where_torch_says(
    bundled_embedder: SentenceTransformerEmbedder,
) -> None:
    """On this machine: the CPU unless torch sees a GPU; the model's own device agrees."""
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert bundled_embedder.info.device == expected
    assert bundled_embedder.model.device.type == expected  # type: ignore[attr-defined]


@pytest.mark.gpu
def test_embeddings_on_the_gpu_match_the_cpu(monkeypatch: pytest.MonkeyPatch, mi5: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU")
    texts = _long_reviews(mi5, 16)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    on_cpu = load_embedder().embed(texts)
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    gpu_embedder = load_embedder()
    assert gpu_embedder.info.device == "cuda"
    on_gpu = gpu_embedder.embed(texts)
    cosines = np.sum(on_cpu * on_gpu, axis=1)
    assert cosines.min() > 0.999, cosines.min()
