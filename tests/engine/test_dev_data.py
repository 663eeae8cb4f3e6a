"""The engine on the real dev data (amazon14-mi5) with the real store, embedder and model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import copy_db
from dpl_engine import Engine, EngineConfig, ProgressEvent, ResultEvent, TokenEvent
from dpl_engine.method.selection import N_INIT, review_key
from models import SamplingParams
from tests.differences_check import assert_read
from user_store import UserStore

from .fakes import CountingEmbedder, RecordingGenerator, prompt_text

# Hand-checked: this user's held-out review is titled "The Little Go-To Lifesaver"; the item has
# only placeholder metadata, so BM25 matches review titles. Of the user's 27 other titles exactly
# three share a query word ("little", "go"; "the"/"to" are stop words):
#   B003VWJ2K8 "Great Little On-The-Go Tuner"   (both words)
#   B0002E2S36 "My Go-To Picks For Practice And General Plonking About"
#   B001RNOHHG "Very Solid Little Board For Minimal Pedal Setup"
USER = "A34O0KQV4QXWNQ"
TARGET_ITEM = "B0002OOMU8"


@pytest.fixture
def dev_store(mi5_db: Path, tmp_path: Path):
    store = UserStore(copy_db(mi5_db, tmp_path / "mi5-copy.db"))
    yield store
    store.close()


def no_models() -> None:
    raise AssertionError("this step must not load a model")


def test_retrieval_finds_the_hand_checked_items(dev_store: UserStore):
    e = Engine(dev_store, no_models, no_models, EngineConfig(k=8))
    target = e.held_out_target(USER)
    assert target.item.id == TARGET_ITEM and target.title == "The Little Go-To Lifesaver"
    found = e.retrieve(target)
    assert len(found) == 8
    assert found[0].entry.item.id == "B003VWJ2K8"
    assert {r.entry.item.id for r in found[1:3]} == {"B0002E2S36", "B001RNOHHG"}
    assert found[0].score > found[1].score > 0
    assert found[1].score == pytest.approx(found[2].score)  # one shared word each
    # The rest share no word with the query: they score 0 and come most recent first.
    rest = found[3:]
    assert all(r.score == 0 for r in rest)
    stamps = [r.entry.review.timestamp for r in rest]
    assert stamps == sorted(stamps, reverse=True)
    assert TARGET_ITEM not in {r.entry.item.id for r in found}


def test_comparison_users_are_deterministic_and_never_from_the_users_cluster(
    dev_store: UserStore, bundled_embedder
):
    from sklearn.cluster import KMeans

    cfg = EngineConfig(k=8, m=4, n=4, seed=7)
    e = Engine(dev_store, no_models, bundled_embedder, cfg)
    target = e.held_out_target(USER)
    first = e.comparisons(target)
    again = e.comparisons(target, refresh=True)
    fresh = Engine(dev_store, no_models, bundled_embedder, cfg).comparisons(target, refresh=True)
    assert len(first) == 8  # 5-core data: every item has at least 4 other reviewers
    assert first == again == fresh

    for cs in first:
        assert cs.user_review.user_id == USER and 1 <= len(cs.users) <= 4
        others = [
            r for r in dev_store.reviews_of_item(cs.item.id, exclude_user=USER) if r.text.strip()
        ]
        assert cs.reviewers == len(others) >= 4
        keys = [review_key(cs.user_review)] + [review_key(r) for r in others]
        cached = dev_store.get_embeddings(keys, bundled_embedder.model_id)
        points = np.vstack([cached[k] for k in keys]).astype(np.float64)
        km = KMeans(n_clusters=min(5, len(points)), random_state=7, n_init=N_INIT).fit(points)
        own = km.labels_[0]
        for u in cs.users:
            assert u.cluster != own and u.user_id != USER
            members = [i for i in range(1, len(points)) if km.labels_[i] == u.cluster]
            dists = [np.linalg.norm(points[i] - km.cluster_centers_[u.cluster]) for i in members]
            best = min(dists)
            ties = [
                others[i - 1].user_id
                for i, d in zip(members, dists, strict=True)
                if d - best < 1e-9
            ]
            assert u.user_id == min(ties)  # nearest the centre; equal distances go to the lower id
            assert u.distance == pytest.approx(min(dists), abs=1e-5)
            assert -1 <= u.similarity <= 1 and u.rating == u.review.rating
        assert len({u.cluster for u in cs.users}) == len(cs.users)


SMALL = EngineConfig(
    k=3,
    m=4,
    n=2,
    seed=11,
    generation=SamplingParams(max_tokens=12),
    analysis=SamplingParams(max_tokens=96),
    max_review_chars=600,
)


def run_to_end(engine: Engine, target, method):
    events = list(engine.run(target, method))
    assert isinstance(events[-1], ResultEvent)
    result = events[-1].result
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert tokens and "".join(tokens) == result.text and not result.cancelled
    assert result.stats is not None and result.stats.finish_reason in ("stop", "length")
    assert result.stats.completion_tokens >= 1
    return events, result


def test_dpl_end_to_end_hides_the_held_out_review_and_reuses_every_cached_step(
    dev_store: UserStore, bundled_generator, bundled_embedder
):
    gen, emb = RecordingGenerator(bundled_generator), CountingEmbedder(bundled_embedder)
    e = Engine(dev_store, gen, emb, SMALL)
    target = e.held_out_target(USER)
    held = target.held_out.text

    events, first = run_to_end(e, target, "dpl")
    assert len(first.comparisons) == 3 and len(first.differences) == 3
    # At 96 tokens the bundled model can run past the limit before closing its JSON (1 of
    # these 3 does): at most one answer may be kept as free text, not all of them.
    assert_read(first.differences, max_fallback_share=1 / 3)
    # Three differences calls, each retried once at most, the profile and the review; the
    # engine counts a retry as the model call it is.
    assert gen.calls["json"] == 3 and gen.calls["json retry"] <= 3
    assert first.llm_calls == gen.total_calls == 3 + gen.calls["json retry"] + 2
    assert first.profile is not None and first.profile.kind == "dpl" and first.profile.text
    assert emb.embedded  # embeddings were computed on the cold run
    for kind, messages in gen.prompts:
        text = prompt_text(messages)
        assert held not in text and held[:60] not in text, kind
    steps = {ev.step for ev in events if isinstance(ev, ProgressEvent)}
    assert steps == {
        "retrieve",
        "embed",
        "compare",
        "measure",
        "differences",
        "profile",
        "generate",
    }
    stored = dev_store.generations(USER, TARGET_ITEM)
    assert [g.id for g in stored] == [first.generation_id] and stored[0].text == first.text
    assert stored[0].model_id == bundled_generator.model_id and stored[0].prompt_version

    embedded = len(emb.embedded)
    events, second = run_to_end(e, target, "dpl")
    assert second.llm_calls == 1 and gen.total_calls == first.llm_calls + 1
    assert gen.calls["stream"] >= 2
    assert len(emb.embedded) == embedded
    assert all(
        ev.cached
        for ev in events
        if isinstance(ev, ProgressEvent)
        and ev.i > 0
        and ev.step not in ("retrieve", "measure", "generate")  # measuring needs no cache
    )
    assert second.profile == first.profile and second.differences == first.differences
    assert held not in prompt_text(gen.prompts[-1][1])


@pytest.mark.parametrize("method", ["none", "rag", "profile"])
def test_baseline_end_to_end_with_real_models(
    method, dev_store: UserStore, bundled_generator, bundled_embedder
):
    gen = RecordingGenerator(bundled_generator)
    e = Engine(dev_store, gen, CountingEmbedder(bundled_embedder), SMALL)
    target = e.held_out_target(USER)
    _, result = run_to_end(e, target, method)
    prompt = prompt_text(result.messages)
    assert target.title in prompt and TARGET_ITEM in prompt
    assert target.held_out.text not in prompt
    assert result.llm_calls == (2 if method == "profile" else 1) == gen.total_calls
    assert e.embedder.embedded == []  # only dpl compares users
    assert not result.comparisons and not result.differences
    if method == "none":
        assert not result.retrieved and "Reviews this person wrote" not in prompt
    else:
        assert len(result.retrieved) == 3
        for r in result.retrieved:
            assert r.entry.review.text[:40].strip() in prompt
    if method == "profile":
        assert result.profile is not None and result.profile.kind == "profile"
        profile_prompt = prompt_text(gen.prompts[0][1])
        assert "differed" not in profile_prompt and "other people" not in profile_prompt
        assert result.profile.text.strip() in prompt
    else:
        assert result.profile is None and "About this person" not in prompt


def test_small_context_shortens_and_drops_past_reviews_with_the_real_model(dev_store: UserStore):
    from models.llama import load_generator

    small = load_generator(n_ctx=768)
    e = Engine(
        dev_store, small, no_models, EngineConfig(k=8, generation=SamplingParams(max_tokens=8))
    )
    result = e.generate(e.held_out_target(USER), "rag")
    assert not result.cancelled and result.text
    assert any("rag generation:" in n and "768-token context" in n for n in result.notes)
    assert small.count_tokens(result.messages) <= 768 - 8
    prompt = prompt_text(result.messages)
    assert result.retrieved[0].entry.review.text[:40] in prompt  # the most relevant stays


def test_unparseable_differences_keep_the_free_text(
    dev_store: UserStore, bundled_generator, bundled_embedder
):
    e = Engine(
        dev_store,
        bundled_generator,
        bundled_embedder,
        EngineConfig(
            k=1, n=2, analysis=SamplingParams(max_tokens=4), generation=SamplingParams(max_tokens=4)
        ),
    )
    (d,) = e.differences(e.held_out_target(USER))
    assert not d.structured and d.raw and (d.writing, d.emotional, d.semantic) == ("", "", "")


def test_the_engine_runs_a_targets_differences_side_by_side_as_it_runs_them_in_turn(
    mi5_db: Path, tmp_path: Path, bundled_generator, bundled_embedder
):
    """Through the engine's own concurrency: a generator that serves its JSON calls side by
    side gets them all at once, and at temperature 0 answers what one after another answers."""
    from dataclasses import replace

    from models.llama import load_generator

    greedy = replace(SMALL, analysis=SamplingParams(temperature=0.0, max_tokens=64))
    side = RecordingGenerator(load_generator(side_by_side=8))
    assert side.concurrency == 8
    answers = []
    for i, gen in enumerate((RecordingGenerator(bundled_generator), side)):
        with UserStore(copy_db(mi5_db, tmp_path / f"copy{i}.db")) as store:
            e = Engine(store, gen, bundled_embedder, greedy)
            answers.append(e.differences(e.held_out_target(USER)))
        assert gen.calls["json"] == len(answers[-1]) >= 2
    assert answers[0] == answers[1]
    assert side.inner.side_by_side.most_at_once >= 2  # they really ran together
