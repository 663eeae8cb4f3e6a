"""The dpl profile's options: the measured account beside the LLM's differences, and the
uninformative differences left out; each changes the prompt and the cache key, the
defaults change neither."""

from __future__ import annotations

from dpl_engine.method import describe, informative
from tests.engine.fakes import FakeGenerator, prompt_text
from tests.engine.test_pipeline_units import engine, world

ECHOES = {
    "writing": "Plainer words, shorter sentences.",
    "emotional": "emotional style: sentiment and tone",
    "semantic": "Rating: 5 out of 5",
}


def profile_prompt(gen: FakeGenerator) -> str:
    return prompt_text(next(p for kind, p in gen.prompts if kind == "profile"))


def test_by_default_the_profile_gets_every_llm_difference_and_no_measures():
    gen = FakeGenerator(differences=ECHOES)
    e = engine(generator=gen)
    e.generate(e.held_out_target("u1"), "dpl")
    prompt = profile_prompt(gen)
    assert "emotional style: sentiment and tone" in prompt
    assert "Measured from the texts" not in prompt


def test_measured_in_profile_puts_the_account_before_the_llms_differences():
    gen = FakeGenerator()
    e = engine(generator=gen, measured_in_profile=True)
    result = e.generate(e.held_out_target("u1"), "dpl")
    prompt = profile_prompt(gen)
    accounts = [describe.account(m).text for m in result.measured]
    assert accounts and all(a in prompt for a in accounts)
    assert prompt.index("Measured from the texts") < prompt.index("Plainer words")
    pooled = describe.overall(list(result.measured))
    assert pooled is not None and pooled.text in prompt


def test_drop_uninformative_leaves_the_echoes_out_and_keeps_the_contrast():
    gen = FakeGenerator(differences=ECHOES)
    e = engine(generator=gen, drop_uninformative=True)
    e.generate(e.held_out_target("u1"), "dpl")
    prompt = profile_prompt(gen)
    assert "Plainer words, shorter sentences." in prompt
    assert "emotional style: sentiment and tone" not in prompt
    assert "Rating: 5 out of 5" not in prompt.split("differed from other people")[1]


def test_each_option_has_its_own_cached_profile_and_shares_the_differences():
    store = world()
    gen = FakeGenerator(differences=ECHOES)
    plain = engine(store, gen)
    target = plain.held_out_target("u1")
    first = plain.generate(target, "dpl")
    n_items = len(first.comparisons)
    calls = gen.total_calls
    for option, version in (
        ("measured_in_profile", describe.VERSION),
        ("drop_uninformative", informative.RULES_VERSION),
    ):
        variant = engine(store, gen, **{option: True})
        result = variant.generate(target, "dpl")
        # Differences come from the cache; the profile is new; then the review.
        assert result.llm_calls == 2 and gen.total_calls == calls + 2
        calls = gen.total_calls
        assert store.saved[-1]["params"][option] == version  # stored with the generation
    assert "measured_in_profile" not in store.saved[0]["params"]
    again = engine(store, gen).generate(target, "dpl")
    assert again.llm_calls == 1 and again.profile == first.profile  # default key unchanged
    assert n_items >= 2
