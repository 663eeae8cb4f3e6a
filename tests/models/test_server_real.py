"""The server backend against a real server: llama-cpp-python's own OpenAI-compatible server
(``python -m llama_cpp.server``) on 127.0.0.1 with the bundled GGUF, started once for this
module and stopped afterwards, also when a test fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db
from dpl_tui.cli import app
from models import SamplingParams
from models.server import ServerConfig, connect
from tests.differences_check import assert_read
from user_store import UserStore
from user_store.config import Settings
from user_store.eval_store import EvalStore

from .llama_server import SERVED, llama_server

pytestmark = pytest.mark.slow

USER = "A34O0KQV4QXWNQ"  # hand-checked in tests/engine/test_dev_data.py
TARGET_ITEM = "B0002OOMU8"  # its held-out review's item
MESSAGES = [{"role": "user", "content": "Describe a good guitar cable in one sentence."}]


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running llama_cpp.server on a free loopback port; its log is kept beside it."""
    with llama_server(tmp_path_factory.mktemp("llama-server")) as url:
        yield url


def config(url: str, **kw) -> ServerConfig:
    return ServerConfig(
        **{
            "name": "smol",
            "url": url,
            "model": SERVED,
            "context_length": 8192,
            "timeout_s": 120.0,
            **kw,
        }
    )


@pytest.fixture
def registered(server_url: str) -> str:
    """The server registered as 'smol' in this test's settings."""
    settings = Settings.load()
    settings.servers["smol"] = config(server_url, concurrency=2).to_dict()
    settings.save()
    return "smol"


def test_it_streams_and_counts_prompts_at_least_as_llama_cpp_does(server_url, bundled_generator):
    gen = connect(config(server_url))
    assert gen.kind == "llama-cpp-python" and gen.served == (SERVED,)
    assert gen.n_ctx == 8192
    # The server counts plain text; with the template's markers added it never undercounts.
    assert gen.count_tokens(MESSAGES) >= bundled_generator.count_tokens(MESSAGES)
    deltas = []
    with gen.stream(MESSAGES, SamplingParams(max_tokens=24, seed=3)) as stream:
        for delta in stream:
            deltas.append(delta)
    assert len(deltas) > 1 and "".join(deltas).strip()
    assert stream.stats is not None and stream.stats.finish_reason in ("stop", "length")
    assert stream.stats.completion_tokens >= 1


def differences_prompt(db: Path) -> list:
    """The real differences prompt for the user's item TARGET_ITEM and three other reviews."""
    from dpl_engine.method import prompts

    with UserStore(db) as store:
        item = store.item(TARGET_ITEM)
        others = store.reviews_of_item(TARGET_ITEM, exclude_user=USER)[:3]
        (mine,) = [r for r in store.reviews_of_item(TARGET_ITEM) if r.user_id == USER]
    return prompts.differences_messages(item, mine, others, [600] * len(others), 600)


def test_the_differences_schema_constrains_a_real_answer(server_url, mi5_db):
    """The real schema, sent in this server's form: the answer is JSON that the schema accepts
    (greedy, with room for the bundled model to close it)."""
    import jsonschema

    from dpl_engine.method.prompts import DIFFERENCES_SCHEMA

    gen = connect(config(server_url))
    value, stats = gen.complete_json(
        differences_prompt(mi5_db), DIFFERENCES_SCHEMA,
        SamplingParams(max_tokens=256, temperature=0.0, seed=5), retries=0,
    )  # fmt: skip
    jsonschema.validate(value, DIFFERENCES_SCHEMA)
    assert all(value[key].strip() for key in DIFFERENCES_SCHEMA["required"])
    assert stats.finish_reason == "stop" and stats.completion_tokens > 0


def test_a_json_answer_cut_off_is_retried_with_twice_the_limit(server_url, mi5_db):
    from dpl_engine.method.prompts import DIFFERENCES_SCHEMA
    from models import StructuredOutputError

    gen = connect(config(server_url))
    with pytest.raises(StructuredOutputError) as err:
        gen.complete_json(
            differences_prompt(mi5_db), DIFFERENCES_SCHEMA,
            SamplingParams(max_tokens=4, seed=5), retries=1,
        )  # fmt: skip
    assert "max_tokens=8" in str(err.value)  # the retry's limit: twice the first one's
    assert err.value.attempts == 2 and err.value.stats.completion_tokens == 4 + 8
    assert err.value.raw.startswith("{")


def test_a_prompt_over_the_entrys_context_names_how_to_give_it_more(server_url):
    from models import ContextOverflowError

    gen = connect(config(server_url, context_length=64))
    with pytest.raises(ContextOverflowError) as err:
        gen.stream(MESSAGES, SamplingParams(max_tokens=60))
    assert f"dpl models add smol --url {server_url} --model {SERVED} --context-length N" in str(
        err.value
    )


def test_cancel_mid_stream_closes_it_and_the_server_takes_the_next_request(server_url):
    gen = connect(config(server_url))
    stream = gen.stream(MESSAGES, SamplingParams(max_tokens=400, seed=1))
    got = [next(stream) for _ in range(3)]
    stream.close()
    assert len(got) == 3 and list(stream) == []
    assert stream.stats is not None and stream.stats.finish_reason == "cancelled"
    text, stats = gen.complete(MESSAGES, SamplingParams(max_tokens=8, seed=1))
    assert text and stats.finish_reason in ("stop", "length")


def test_compare_then_generate_through_the_server(registered, mi5_db, tmp_path):
    db = copy_db(mi5_db, tmp_path / "mi5.db")
    runner = CliRunner()
    few = ["--k", "2", "--m", "3", "--n", "2"]  # two comparison items at most: two calls
    compared = runner.invoke(
        app, ["compare", USER, "--model", registered, "--db", str(db), "--json", *few]
    )
    assert compared.exit_code == 0, compared.output
    found = json.loads(compared.stdout)
    assert found["comparisons"] and len(found["differences"]) == len(found["comparisons"])
    # At the default analysis limit every answer must close its JSON: none falls back.
    assert_read(found["differences"], max_fallback_share=0.0)

    generated = runner.invoke(
        app,
        [
            "generate",
            USER,
            "--model",
            registered,
            "--db",
            str(db),
            "--json",
            "--method",
            "rag",
            "--max-tokens",
            "32",
            *few,
        ],
    )
    assert generated.exit_code == 0, generated.output
    result = json.loads(generated.stdout)
    assert result["text"].strip() and result["model_id"] == f"{SERVED}@{registered_address(db)}"
    assert result["method"] == "rag" and result["llm_calls"] == 1
    with UserStore(db) as store:
        assert [g.model_id for g in store.generations(USER)] == [result["model_id"]]


def registered_address(_db: Path) -> str:
    from urllib.parse import urlsplit

    return urlsplit(Settings.load().servers["smol"]["url"]).netloc


def test_a_two_method_eval_with_concurrency_2_and_its_resume(registered, mi5_db, tmp_path):
    db = copy_db(mi5_db, tmp_path / "mi5.db")
    args = [
        "eval",
        "--methods",
        "none,rag",
        "--users",
        "2",
        "--concurrency",
        "2",
        "--model",
        registered,
        "--min-chars",
        "200",
        "--min-user-reviews",
        "6",
        "--min-item-reviewers",
        "3",
        "--max-tokens",
        "32",
        "--k",
        "2",
        "--db",
        str(db),
        "--json",
    ]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert [row["method"] for row in report["rows"]] == ["none", "rag"]
    with UserStore(db) as store:
        evals = EvalStore(store)
        (run,) = evals.runs()
        assert len(evals.done_cells(run.id)) == 4
        assert run.config["model_id"].startswith(f"{SERVED}@127.0.0.1:")
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "4 already done" in again.output
