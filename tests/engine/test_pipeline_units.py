"""Engine behaviour on a small hand-made store with a scripted LLM and hashed embeddings."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dpl_engine import CancelToken, Engine, EngineConfig, ProgressEvent, ResultEvent, TokenEvent
from dpl_engine.errors import EngineError, NotEnoughHistoryError
from dpl_engine.method.cache import digest, to_json
from dpl_engine.types import ComparisonSet
from models import SamplingParams
from user_store import ArtifactKey, Item

from .fakes import FakeEmbedder, FakeGenerator, MemoryStore, prompt_text, review

ITEMS = [
    Item("strings", "Nickel guitar strings", "Light gauge nickel wound electric guitar strings"),
    Item("cable", "Instrument cable", "Ten foot braided instrument cable with straight plugs"),
    Item("tuner", "Clip-on tuner", "Chromatic clip-on tuner for guitar and bass"),
    Item("picks", "Celluloid picks", "Medium celluloid guitar picks, pack of twelve"),
    Item("stand", "Guitar stand", "Folding guitar stand with rubber padding"),
    Item("capo", "Trigger capo", "Spring trigger capo for acoustic and electric guitar"),
    Item("target", "Acoustic strings", "Phosphor bronze acoustic guitar strings"),
]
HELD_OUT = "These bronze strings rang out for weeks and never went dead on me, superb tone."

OTHER_TEXTS = [
    "Great strings, bright and loud. Would buy again!!!",
    "Terrible. Broke on day one and the seller ignored me. Avoid.",
    "They are strings. They work. Nothing special to report here.",
    "As a session player I go through sets weekly; these hold tuning well and feel smooth.",
    "Bought for my son, he likes them. Shipping was quick.",
    "Bright tone, slick feel, decent price; intonation stays true after bends.",
]


def world() -> MemoryStore:
    mine = [
        review(
            "u1",
            "strings",
            "Nice strings that stay in tune, warm tone on my strat.",
            title="Warm strings",
            ts=1,
        ),
        review(
            "u1",
            "cable",
            "Cable is quiet with no hum at all. Good plugs.",
            title="Quiet cable",
            ts=2,
        ),
        review(
            "u1",
            "tuner",
            "Tuner is accurate and the clip holds on the headstock.",
            title="Accurate tuner",
            ts=3,
        ),
        review(
            "u1",
            "picks",
            "Picks are fine, a bit slippery when my hands sweat.",
            title="Fine picks",
            ts=4,
        ),
        review("u1", "stand", "", title="Stand", ts=5),  # empty text: never used
        review(
            "u1",
            "capo",
            "Capo clamps evenly and the strings stay in tune after moving it.",
            title="Even capo",
            ts=6,
        ),
        review("u1", "target", HELD_OUT, rating=5, title="Bronze strings that last", ts=7),
    ]
    others = [
        review(f"o{j}", item, text + f" ({item})", rating=1 + j % 5, ts=10 + j)
        for item in ("strings", "cable", "tuner", "capo")
        for j, text in enumerate(OTHER_TEXTS)
    ]
    sparse = [review(f"o{j}", "picks", OTHER_TEXTS[j], ts=20 + j) for j in range(2)]
    return MemoryStore(mine + others + sparse, ITEMS)


def engine(store=None, generator=None, embedder=None, **cfg) -> Engine:
    config = EngineConfig(**{"k": 4, "m": 3, "n": 3, **cfg})
    return Engine(
        store or world(), generator or FakeGenerator(), embedder or FakeEmbedder(), config
    )


def test_held_out_target_is_latest_review_with_text():
    e = engine()
    t = e.held_out_target("u1")
    assert t.item.id == "target" and t.held_out is not None and t.held_out.text == HELD_OUT
    assert (t.rating, t.title) == (5.0, "Bronze strings that last")


def test_single_review_user_cannot_be_held_out():
    store = MemoryStore([review("solo", "strings", "Only one review here.")], ITEMS)
    with pytest.raises(NotEnoughHistoryError, match="solo"):
        engine(store).held_out_target("solo")


def test_target_rejects_out_of_range_rating():
    with pytest.raises(EngineError, match="1 to 5"):
        engine().target("u1", "strings", rating=7, title="x")


def test_retrieval_ranks_by_query_and_skips_target_and_empty_reviews():
    e = engine(k=8)
    found = e.retrieve(e.held_out_target("u1"))
    ids = [r.entry.item.id for r in found]
    assert "target" not in ids and "stand" not in ids  # held out; empty text
    assert ids[0] == "strings"  # "strings" + "guitar strings" match the query best
    assert [r.rank for r in found] == list(range(1, len(found) + 1))
    assert found[0].score > found[-1].score


def test_comparison_items_need_m_other_reviewers_and_skip_own_cluster():
    e = engine(k=8)
    sets = e.comparisons(e.held_out_target("u1"))
    assert {c.item.id for c in sets} == {"strings", "cable", "tuner", "capo"}  # picks has 2
    for c in sets:
        assert 1 <= len(c.users) <= 3 and c.reviewers == 6
        assert all(u.user_id != "u1" for u in c.users)
        assert len({u.cluster for u in c.users}) == len(c.users)


@pytest.mark.parametrize(("attempts", "said"), [(2, "after a retry"), (1, "a retry would repeat")])
def test_differences_fall_back_to_free_text_when_json_fails(attempts, said):
    gen = FakeGenerator(json_ok=False, json_attempts=attempts)
    e = engine(generator=gen)
    result = e.generate(e.held_out_target("u1"), "dpl")
    assert result.differences and all(not d.structured for d in result.differences)
    assert all(d.raw == "They write longer and angrier." for d in result.differences)
    assert any("free text" in n and said in n for n in result.notes)
    profile_prompt = next(prompt_text(p) for kind, p in gen.prompts if kind == "profile")
    assert "They write longer and angrier." in profile_prompt


@pytest.mark.parametrize(
    ("generator", "per_item"),
    [
        (FakeGenerator(json_attempts=2), 2),  # valid JSON on the retry
        (FakeGenerator(json_ok=False, json_attempts=2), 2),  # no valid JSON after the retry
        (FakeGenerator(json_ok=False), 1),  # greedy: the retry would repeat it, none is made
        (FakeGenerator(), 1),
    ],
)
def test_llm_calls_count_each_retry_of_a_differences_answer(generator, per_item):
    e = engine(world(), generator, FakeEmbedder())
    result = e.generate(e.held_out_target("u1"), "dpl")
    assert generator.calls["differences"] == len(result.comparisons) >= 2
    assert result.llm_calls == per_item * len(result.comparisons) + 2  # profile, review


def test_second_run_only_generates_and_refresh_recomputes():
    gen, emb = FakeGenerator(), FakeEmbedder()
    store = world()
    e = engine(store, gen, emb)
    t = e.held_out_target("u1")
    first = e.generate(t, "dpl")
    n_items = len(first.comparisons)
    assert n_items >= 2
    assert first.llm_calls == n_items + 2 == gen.total_calls  # differences, profile, generation
    embedded = len(emb.embedded)

    events = list(e.run(t, "dpl"))
    second = events[-1].result
    assert second.llm_calls == 1 and gen.total_calls == n_items + 3
    assert len(emb.embedded) == embedded  # no review embedded twice
    steps = [
        ev for ev in events if isinstance(ev, ProgressEvent) and ev.i > 0 and ev.step != "generate"
    ]
    # Retrieval and the measured differences are counted again each time (no model).
    assert steps and all(ev.cached for ev in steps if ev.step not in ("retrieve", "measure"))
    assert second.profile == first.profile and second.differences == first.differences

    third = e.generate(t, "dpl", refresh=True)
    assert third.llm_calls == n_items + 2
    assert len(emb.embedded) == embedded  # embeddings depend only on text and model
    assert len(store.saved) == 3


def test_the_same_seed_repeats_its_choice_and_another_seed_reaches_kmeans():
    def chosen(seed: int) -> list[list[str]]:
        e = engine(world(), embedder=FakeEmbedder(), seed=seed)
        return [[u.user_id for u in c.users] for c in e.comparisons(e.held_out_target("u1"))]

    assert chosen(0) == chosen(0)
    # Another seed starts KMeans elsewhere: in this world it picks other representatives
    # for some items (so the seed does reach the clustering).
    assert [set(c) for c in chosen(1)] != [set(c) for c in chosen(0)]


def test_each_method_prompt_holds_only_what_it_should():
    texts = {}
    for method in ("none", "rag", "profile", "dpl"):
        gen = FakeGenerator()
        e = engine(generator=gen)
        result = e.generate(e.held_out_target("u1"), method)
        texts[method] = (gen, result, prompt_text(result.messages))
    past = "Nice strings that stay in tune, warm tone on my strat."
    for method, (gen, result, prompt) in texts.items():
        assert "Acoustic strings" in prompt and "Bronze strings that last" in prompt
        assert "5 out of 5" in prompt
        assert HELD_OUT not in prompt
        assert (past in prompt) == (method != "none")
        assert ("About this person as a reviewer" in prompt) == (method in ("profile", "dpl"))
        assert "Plainer words" not in prompt  # raw differences only reach the profile prompt
        kinds = [k for k, _ in gen.prompts]
        assert kinds.count("differences") == (len(result.comparisons) if method == "dpl" else 0)
        assert kinds.count("profile") == (1 if method in ("profile", "dpl") else 0)
    profile_prompts = {
        m: prompt_text(next(p for k, p in texts[m][0].prompts if k == "profile"))
        for m in ("profile", "dpl")
    }
    assert "Plainer words" in profile_prompts["dpl"]
    assert "Plainer words" not in profile_prompts["profile"]
    assert "differed" not in profile_prompts["profile"]
    assert (
        OTHER_TEXTS[0] not in profile_prompts["profile"]
        and OTHER_TEXTS[0] not in profile_prompts["dpl"]
    )


def test_cancel_during_generation_closes_stream_and_reports():
    token = CancelToken()
    gen = FakeGenerator()
    e = engine(generator=gen)
    events = []
    for ev in e.run(e.held_out_target("u1"), "rag", cancel=token):
        events.append(ev)
        if (
            isinstance(ev, TokenEvent)
            and len([x for x in events if isinstance(x, TokenEvent)]) == 2
        ):
            token.cancel()
    result = events[-1].result
    assert isinstance(events[-1], ResultEvent) and result.cancelled
    assert len([x for x in events if isinstance(x, TokenEvent)]) == 2
    assert gen.streams[-1].closed_early and result.generation_id is None
    assert e.store.saved == []


def test_cancel_between_steps_stops_before_any_llm_call():
    token = CancelToken()
    gen = FakeGenerator()
    e = engine(generator=gen)
    out = []
    for ev in e.run(e.held_out_target("u1"), "dpl", cancel=token):
        out.append(ev)
        if isinstance(ev, ProgressEvent) and ev.step == "retrieve":
            token.cancel()
    assert out[-1].result.cancelled and gen.total_calls == 0
    assert out[-1].result.retrieved


def test_cancel_inside_a_differences_call_stops_it_within_a_token():
    token = CancelToken()
    seen = []

    def json_token() -> None:
        seen.append(1)
        if len(seen) == 3:
            token.cancel()

    gen = FakeGenerator(on_json_token=json_token)
    e = engine(generator=gen)
    out = list(e.run(e.held_out_target("u1"), "dpl", cancel=token))
    result = out[-1].result
    assert result.cancelled and result.generation_id is None
    # One differences call was started and left after its third token; nothing else ran,
    # and the half-made answer was not cached as if it were finished.
    assert len(seen) == 3 and gen.calls["differences"] == 1 and gen.total_calls == 1
    assert [k for k in e.store.artifacts if k[0] == "differences"] == []


def test_context_budget_drops_least_relevant_reviews_and_says_so():
    gen = FakeGenerator(n_ctx=170)
    e = engine(generator=gen, k=5, generation=SamplingParams(max_tokens=40))
    result = e.generate(e.held_out_target("u1"), "rag")
    assert result.notes and "left out" in result.notes[-1]
    assert gen.count_tokens(result.messages) <= 170 - 40
    kept = prompt_text(result.messages)
    assert result.retrieved[0].entry.review.text[:30] in kept
    assert result.retrieved[-1].entry.review.text[:30] not in kept


def test_prompt_that_cannot_fit_is_an_error_not_a_silent_cut():
    e = engine(generator=FakeGenerator(n_ctx=60), generation=SamplingParams(max_tokens=40))
    with pytest.raises(EngineError, match="60-token context"):
        e.generate(e.held_out_target("u1"), "none")


def test_excluded_reviews_are_never_seen():
    store = world()
    gen = FakeGenerator()
    hidden = [("u1", "strings"), ("o0", "cable")]
    e = Engine(store, gen, FakeEmbedder(), EngineConfig(k=8, m=3, n=3), exclude_reviews=hidden)
    result = e.generate(e.held_out_target("u1"), "dpl")
    assert "strings" not in [r.entry.item.id for r in result.retrieved]
    everything = "\n".join(prompt_text(p) for _, p in gen.prompts)
    assert "warm tone on my strat" not in everything
    assert OTHER_TEXTS[0] + " (cable)" not in everything
    cable = next(c for c in result.comparisons if c.item.id == "cable")
    assert cable.reviewers == 5


def test_models_given_as_factories_load_on_first_use():
    loaded = []

    def make_gen():
        loaded.append("gen")
        return FakeGenerator()

    e = Engine(world(), make_gen, FakeEmbedder, EngineConfig(k=3, m=3, n=3))
    t = e.held_out_target("u1")
    e.retrieve(t)
    assert loaded == []
    e.generate(t, "none")
    assert loaded == ["gen"]


def _comparison_key(e: Engine, c: ComparisonSet, **params: object) -> ArtifactKey:
    """A comparison set's cache key, written out as the engine builds it."""
    reviews = [c.user_review, *e._others(c.user_review)]
    inputs = digest([(r.user_id, r.rating, r.title, r.text) for r in reviews])
    return ArtifactKey(
        user_id=c.user_review.user_id,
        item_key=c.item.id,
        model_id=e.embedder_id,
        prompt_version="",
        params={"n": e.config.n, "inputs": inputs, **params},
    )


def test_default_comparison_keys_are_unchanged_by_the_paper_rule():
    store = world()
    e = engine(store)
    sets = e.comparisons(e.held_out_target("u1"))
    for c in sets:
        key = _comparison_key(e, c, seed=e.config.seed, n_init=10)
        assert store.get_artifact("comparison", key) is not None


def test_paper_sets_cached_before_the_paper_rule_are_not_reused():
    e = engine(preset="paper")
    target = e.held_out_target("u1")
    fresh = e.comparisons(target)
    # A store holding, under the keys the paper preset used before it had a rule of its
    # own, sets that no longer hold: an empty choice for every item.
    store = world()
    for c in fresh:
        old_key = _comparison_key(e, c, seed=42, n_init=None)
        store.put_artifact("comparison", old_key, to_json(replace(c, users=())))
    again = engine(store, preset="paper").comparisons(target)
    assert again == fresh and all(c.users for c in again)
