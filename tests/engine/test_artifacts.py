"""The engine's cached results: looked up unless refreshing, computed on a miss, stored only
once complete, in the JSON shapes and under the keys that caches already on disk were
written with."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from dpl_engine.method import artifacts, prompts
from dpl_engine.method.cache import digest, to_json
from dpl_engine.types import Cancelled, Differences, Profile, ProgressEvent
from user_store import ArtifactKey, UserStore

from .fakes import FakeGenerator
from .test_pipeline_units import engine, world

KEY = ArtifactKey("u1", "item", "model", "v1", {"n": 3})
NOTE = "shortened a review to fit"


@pytest.fixture
def store(tmp_path: Path):
    with UserStore(tmp_path / "store.db") as s:
        yield s


def drive(step):
    """Run a step to its end: its events, and its value."""
    events = []
    while True:
        try:
            events.append(next(step))
        except StopIteration as stop:
            return events, stop.value


def profile_step(text: str, ran: list[str] | None = None):
    if ran is not None:
        ran.append(text)
    yield ProgressEvent("profile", 0, 1, detail="dpl")
    return Profile("dpl", text), [NOTE]


def test_a_miss_runs_the_step_and_a_hit_never_starts_it(store: UserStore) -> None:
    ran: list[str] = []
    events, (value, cached) = drive(
        artifacts.cached(store, artifacts.PROFILE, KEY, profile_step("first", ran), refresh=False)
    )
    assert events == [ProgressEvent("profile", 0, 1, detail="dpl")]
    assert value == (Profile("dpl", "first"), [NOTE]) and cached is False

    events, (value, cached) = drive(
        artifacts.cached(store, artifacts.PROFILE, KEY, profile_step("second", ran), refresh=False)
    )
    assert events == [] and cached is True
    assert value == (Profile("dpl", "first"), [NOTE])
    assert ran == ["first"]


def test_refresh_recomputes_and_replaces_the_stored_value(store: UserStore) -> None:
    drive(artifacts.cached(store, artifacts.PROFILE, KEY, profile_step("old"), refresh=False))
    assert artifacts.lookup(store, artifacts.PROFILE, KEY, refresh=True) is None
    _, (value, cached) = drive(
        artifacts.cached(store, artifacts.PROFILE, KEY, profile_step("new"), refresh=True)
    )
    assert cached is False
    assert artifacts.lookup(store, artifacts.PROFILE, KEY, refresh=False) == value


def test_a_step_that_stops_leaves_nothing_stored(store: UserStore) -> None:
    def cancelled():
        yield ProgressEvent("profile", 0, 1, detail="dpl")
        raise Cancelled()

    step = artifacts.cached(store, artifacts.PROFILE, KEY, cancelled(), refresh=False)
    with pytest.raises(Cancelled):
        drive(step)
    assert store.get_artifact("profile", KEY) is None


def test_stored_shapes_are_the_ones_older_caches_hold(store: UserStore) -> None:
    found = Differences("item", "plainer", "calmer", "fewer details")
    profile = Profile("profile", "Writes short reviews.")
    e = engine()
    comparison = e.comparisons(e.held_out_target("u1"))[0]
    for artifact, value, shape in (
        (artifacts.DIFFERENCES, (found, [NOTE]), {"differences": asdict(found), "notes": [NOTE]}),
        (artifacts.PROFILE, (profile, []), {"profile": asdict(profile), "notes": []}),
        (artifacts.COMPARISON, comparison, json.loads(json.dumps(to_json(comparison)))),
    ):
        artifacts.keep(store, artifact, KEY, value)
        assert store.get_artifact(artifact.kind, KEY) == shape
        assert artifacts.lookup(store, artifact, KEY, refresh=False) == value


def test_differences_and_profile_keys_are_the_ones_caches_were_written_under() -> None:
    store, gen = world(), FakeGenerator()
    e = engine(store, gen)
    result = e.generate(e.held_out_target("u1"), "dpl")
    cfg = e.config
    shared = {
        "sampling": asdict(replace(cfg.analysis, seed=cfg.seed)),
        "max_review_chars": cfg.max_review_chars,
    }
    for c in result.comparisons:
        key = ArtifactKey(
            user_id="u1",
            item_key=c.item.id,
            model_id=gen.model_id,
            prompt_version=prompts.differences_version(e.preset),
            params={"comparison": digest(c), **shared},
        )
        assert store.get_artifact("differences", key) is not None
    pairs = [(c.item, d) for c, d in zip(result.comparisons, result.differences, strict=True)]
    key = ArtifactKey(
        user_id="u1",
        item_key=",".join(r.entry.item.id for r in result.retrieved),
        model_id=gen.model_id,
        prompt_version=prompts.profile_version("dpl", e.preset),
        params={
            "past": digest([r.entry for r in result.retrieved]),
            "differences": digest(pairs),
            **shared,
        },
    )
    assert store.get_artifact("profile", key) == {"profile": asdict(result.profile), "notes": []}
