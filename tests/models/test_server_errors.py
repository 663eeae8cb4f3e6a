"""The server backend's error paths against a misbehaving fake server on 127.0.0.1: each
failure becomes one line naming the URL and the remedy, and nothing half-done is kept."""

from __future__ import annotations

import threading
import time

import pytest
from typer.testing import CliRunner

from benchmarks.common import copy_db, free_port
from dpl_tui.cli import app
from models import SamplingParams
from models.errors import (
    ContextOverflowError,
    ServerAuthError,
    ServerModelError,
    ServerStreamError,
    ServerUnreachableError,
)
from models.server import ServerConfig, connect
from tests.engine.fakes import FakeEmbedder
from user_store.config import Settings

from .fake_openai import FakeOpenAI

MESSAGES = [{"role": "user", "content": "Say something."}]
PARAMS = SamplingParams(max_tokens=32, seed=1)
USER = "A34O0KQV4QXWNQ"
"""A dev-data user with enough history to hold a review out."""


def config(url: str, **kw) -> ServerConfig:
    base = dict(name="fake", url=url, model="fake-model", max_retries=2, timeout_s=10.0)
    base.update(kw)
    return ServerConfig(**base)


def text_of(gen) -> str:
    with gen.stream(MESSAGES, PARAMS) as s:
        return "".join(s)


def test_refused_connection_names_the_url_and_how_to_start_a_server() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServerUnreachableError) as err:
        connect(config(url, max_retries=0))
    message = str(err.value)
    assert f"Could not reach {url}" in message
    assert "Is the server running?" in message and "dpl models add fake --url" in message


def test_the_cli_prints_one_line_without_a_traceback_for_a_dead_server(mi5_db, tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings.load()
    settings.servers["dead"] = config(url, name="dead", max_retries=0).to_dict()
    settings.save()
    db = copy_db(mi5_db, tmp_path / "mi5.db")
    result = CliRunner().invoke(
        app, ["generate", USER, "--method", "none", "--model", "dead", "--db", str(db)]
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines[0].startswith(f"error: Could not reach {url}")


def test_a_server_that_wants_a_key_says_which_variable_to_set(monkeypatch) -> None:
    with FakeOpenAI(api_key="sekrit").running() as fake:
        with pytest.raises(ServerAuthError) as err:
            connect(config(fake.url))
        assert "401" in str(err.value) and "--api-key-env VAR" in str(err.value)

        monkeypatch.setenv("FAKE_KEY", "wrong")
        with pytest.raises(ServerAuthError) as err:
            connect(config(fake.url, api_key_env="FAKE_KEY"))
        assert "$FAKE_KEY" in str(err.value) and fake.url in str(err.value)

        monkeypatch.setenv("FAKE_KEY", "sekrit")
        assert text_of(connect(config(fake.url, api_key_env="FAKE_KEY"))).split()[0] == "one"


def test_an_unset_key_variable_is_named_before_any_request(monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(ServerAuthError, match=r"\$NO_SUCH_KEY, which is not set"):
        connect(config("http://127.0.0.1:9/v1", api_key_env="NO_SUCH_KEY"))


def test_an_unknown_model_lists_what_the_server_serves() -> None:
    with FakeOpenAI(models=("llama-3-8b", "qwen2.5-7b")).running() as fake:
        with pytest.raises(ServerModelError) as err:
            connect(config(fake.url, model="gpt-9"))
    message = str(err.value)
    assert "'gpt-9'" in message and "llama-3-8b, qwen2.5-7b" in message
    assert "--model llama-3-8b" in message


def test_a_prompt_over_the_servers_context_says_how_to_give_it_a_larger_one() -> None:
    with FakeOpenAI().running() as fake:
        gen = connect(config(fake.url, context_length=64))
        with pytest.raises(ContextOverflowError) as err:
            gen.stream(MESSAGES, SamplingParams(max_tokens=60))
    message = str(err.value)
    assert "has 64 available" in message and "start the server with a larger context" in message
    assert f"dpl models add fake --url {fake.url} --model fake-model --context-length N" in message


def test_429_then_success_is_retried_with_backoff() -> None:
    with FakeOpenAI(script=(429, 503, "ok")).running() as fake:
        gen = connect(config(fake.url, max_retries=3))
        assert text_of(gen) == "one two three four five six seven eight "
        assert len(fake.requests) == 3


def test_rate_limiting_that_never_ends_is_one_line_after_the_retries() -> None:
    with FakeOpenAI(script=(429,)).running() as fake:
        gen = connect(config(fake.url, max_retries=1))
        with pytest.raises(Exception) as err:
            text_of(gen)
        assert "429" in str(err.value) and "--concurrency" in str(err.value)
        assert len(fake.requests) == 2


def test_a_stream_cut_half_way_is_a_clear_error() -> None:
    with FakeOpenAI(script=("cut", "ok")).running() as fake:
        gen = connect(config(fake.url))
        stream = gen.stream(MESSAGES, PARAMS)
        got = []
        with pytest.raises(ServerStreamError) as err:
            for delta in stream:
                got.append(delta)
        assert got == ["one ", "two ", "three ", "four "]
        assert fake.url in str(err.value) and "Nothing was stored" in str(err.value)
        assert text_of(gen).startswith("one two")  # the next request is fine


def test_a_server_that_never_answers_times_out() -> None:
    with FakeOpenAI(script=("hang",)).running() as fake:
        gen = connect(config(fake.url, timeout_s=0.5, max_retries=0))
        with pytest.raises(ServerUnreachableError) as err:
            text_of(gen)
        assert "did not answer within 0.5 s" in str(err.value)


def test_a_stop_check_ends_a_stream_while_the_server_is_silent() -> None:
    with FakeOpenAI(script=("hang",)).running() as fake:
        gen = connect(config(fake.url, timeout_s=30.0, max_retries=0))
        asked = {"n": 0}

        def stop() -> bool:
            asked["n"] += 1
            return asked["n"] > 3

        stream = gen.stream(MESSAGES, PARAMS, stop=stop)
        assert list(stream) == []
        assert stream.stats is not None and stream.stats.finish_reason == "cancelled"


def test_close_from_another_thread_frees_the_reader_at_once() -> None:
    with FakeOpenAI(script=("hang",)).running() as fake:
        gen = connect(config(fake.url, timeout_s=30.0, max_retries=0))
        stream = gen.stream(MESSAGES, PARAMS)
        got: list[list[str]] = []
        reader = threading.Thread(target=lambda: got.append(list(stream)))
        reader.start()
        wait_until(lambda: len(fake.requests) == 1)
        stream.close()
        reader.join(timeout=10)
        assert not reader.is_alive() and got == [[]]
        assert stream.stats is not None and stream.stats.finish_reason == "cancelled"


def wait_until(predicate, deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


# -- a cut stream during an evaluation: nothing half-done is stored, the rerun resumes -----
def test_a_cut_stream_stores_nothing_and_the_next_run_resumes(mi5_db, tmp_path) -> None:
    from dpl_engine import EngineConfig
    from dpl_engine.evaluation import runner as ev
    from dpl_engine.evaluation import split as sp
    from user_store import UserStore
    from user_store.eval_store import EvalStore

    store = UserStore(copy_db(mi5_db, tmp_path / "mi5.db"))
    split = sp.prepare(store, sp.SplitParams(min_chars=200, min_user_reviews=6,
                                             min_item_reviewers=3))
    cfg = ev.EvalConfig(methods=("none",), seeds=(1,), users=2, engine=EngineConfig(m=2))
    with FakeOpenAI(script=("ok", "cut", "ok")).running() as fake:
        gen = connect(config(fake.url))
        first = ev.Evaluation(store, split, gen, FakeEmbedder(), cfg)
        plan = first.plan()
        with pytest.raises(ServerStreamError):
            first.execute(plan, concurrency=1)
        evals = EvalStore(store)
        assert len(evals.done_cells(plan.run.id)) == 1  # the first user finished, and is kept
        cut_user = plan.users[1]
        assert store.generations(cut_user) == []  # nothing of the cut answer was stored

        again = ev.Evaluation(store, split, gen, FakeEmbedder(), cfg)
        report = again.execute(again.plan(), concurrency=2)
        assert len(evals.done_cells(plan.run.id)) == 2
        assert [g.text for g in store.generations(cut_user)] == [fake.reply + " "]
        assert len(fake.requests) == 3  # the finished user was not generated again
        assert report.rows[0].method == "none"
    store.close()


def test_no_more_calls_than_the_entry_allows_are_in_flight_at_once() -> None:
    with FakeOpenAI(script=("hang",)).running() as fake:
        gen = connect(config(fake.url, timeout_s=30.0, max_retries=0, concurrency=2))
        streams = [gen.stream(MESSAGES, PARAMS) for _ in range(3)]
        ended: list[list[str]] = []
        readers = [threading.Thread(target=lambda s=s: ended.append(list(s))) for s in streams]
        for reader in readers:
            reader.start()
        wait_until(lambda: len(fake.requests) == 2)
        assert gen._slots._value == 0 and streams[2]._raw is None  # the third one waits
        streams[0].close()  # frees a slot: the waiting call goes out
        wait_until(lambda: len(fake.requests) == 3)
        for stream in streams[1:]:
            stream.close()
        for reader in readers:
            reader.join(timeout=10)
            assert not reader.is_alive()
        assert ended == [[], [], []]  # each closed cleanly, none failed


def test_a_cancel_reaches_a_generation_still_waiting_for_its_first_token() -> None:
    from dpl_engine import CancelToken
    from tests.engine.test_pipeline_units import engine

    with FakeOpenAI(script=("hang",)).running() as fake:
        gen = connect(config(fake.url, timeout_s=30.0, max_retries=0))
        e = engine(generator=gen)
        target = e.held_out_target("u1")
        token = CancelToken()
        results: list = []
        worker = threading.Thread(
            target=lambda: results.append(e.generate(target, "none", cancel=token))
        )
        worker.start()
        wait_until(lambda: len(fake.requests) == 1)
        token.cancel()
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert results[0].cancelled and results[0].text == ""
        assert e.store.saved == []  # nothing stored for the call that never answered


def test_embeddings_come_from_the_server_normalised_and_cached_under_its_id() -> None:
    import numpy as np

    from dpl_tui.loading import embedder_factory, embedder_id
    from models.server import connect_embedder

    from .fake_openai import fake_vector

    with FakeOpenAI(models=("chat-7b", "gte-qwen2")).running() as fake:
        cfg = config(fake.url, model="chat-7b", embedding_model="gte-qwen2")
        emb = connect_embedder(cfg)
        assert emb.dim == 8
        texts = [f"review {i}" for i in range(5)]
        vectors = emb.embed(texts, batch_size=2)
        expected = np.asarray([fake_vector(t) for t in texts], dtype=np.float32)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        assert np.allclose(vectors, expected, atol=1e-6)
        assert fake.embedded[1:] == texts  # after the dimension probe, in batches, in order

        settings = Settings.load()
        settings.servers["lab"] = cfg.to_dict()
        assert embedder_id(settings, "lab") == emb.model_id == f"gte-qwen2@{cfg.address}"
        assert embedder_factory(settings, "lab")().model_id == emb.model_id
        assert embedder_id(settings, None) == "all-MiniLM-L6-v2"  # the local one otherwise


def test_token_level_vectors_are_mean_pooled_into_one_per_text() -> None:
    import numpy as np

    from models.server import sentence_vector

    assert np.allclose(sentence_vector([1.0, 2.0, 3.0]), [1.0, 2.0, 3.0])
    # a llama.cpp server whose model does no pooling answers one vector per token
    assert np.allclose(sentence_vector([[1.0, 0.0], [3.0, 2.0]]), [2.0, 1.0])
