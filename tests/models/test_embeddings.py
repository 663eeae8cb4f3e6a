"""The bundled all-MiniLM-L6-v2 on real reviews, and the float32 blob format."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from models import ModelLoadError, ModelNotFoundError
from models.embeddings import SentenceTransformerEmbedder, from_blob, load_embedder, to_blob


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
    v = bundled_embedder.embed([
        "These guitar strings sound bright and stay in tune.",
        "Great strings: a crisp tone that holds its tuning.",
        "The power adapter for my keyboard stopped working.",
    ])
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
