"""Adapters in the app: chosen in the model dialog, saved, shown in the status line, and
applied by the real llama.cpp model to the review-writing calls only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.engine.fakes import FakeEmbedder, FakeGenerator
from tests.tui.conftest import wait_until
from user_store.config import Settings


def real_adapter(path: Path, **meta) -> Path:
    """A small LoRA for the bundled model (query and value projections of every block)."""
    from models.adapters import write_adapter
    from models.registry import default_gguf_path, inspect_gguf

    base = inspect_gguf(default_gguf_path())
    rng = np.random.default_rng(0)
    pairs = {}
    for i in range(base.block_count):
        for proj, out in (("q_proj", 576), ("v_proj", 192)):
            pairs[f"model.layers.{i}.self_attn.{proj}"] = (
                rng.normal(0, 0.05, (4, 576)).astype(np.float32),
                rng.normal(0, 0.05, (out, 4)).astype(np.float32),
            )
    return write_adapter(path, pairs, alpha=8.0, architecture="llama",
                         block_count=base.block_count, n_head=9, n_head_kv=3,
                         meta={"base_model_id": base.model_id, "name": "voice",
                               "digest": "0123456789abcdef", **meta})


async def test_the_dialog_saves_the_adapter_and_refuses_an_unknown_one(sample_db, tmp_path):
    from dpl_tui.app import DplApp
    from dpl_tui.screens.dialogs import ModelDialog

    settings = Settings.load()
    settings.adapters["voice"] = str(tmp_path / "voice.gguf")
    settings.save()
    (tmp_path / "voice.gguf").write_bytes(b"GGUF")
    asked: list = []

    def factory(choice):
        asked.append(choice)
        return FakeGenerator(model_id=f"fake-{len(asked)}")

    app = DplApp(db_path=sample_db, generator_factory=factory,
                 embedder_factory=lambda _p: FakeEmbedder())
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.model_status.startswith("fake-1"))
        app.action_switch_model()
        await wait_until(pilot, lambda: isinstance(app.screen, ModelDialog)
                         and app.screen.query("#adapter"))
        app.screen.query_one("#adapter").value = "nothing-like-it"
        await pilot.click("#load")
        assert isinstance(app.screen, ModelDialog)
        assert any(n.title == "Adapter not found" for n in app._notifications)
        app.screen.query_one("#adapter").value = "voice"
        app.screen.query_one("#adapter").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.model_status.startswith("fake-2"))
    assert Settings.load().adapter == "voice"


@pytest.mark.slow
async def test_the_real_model_writes_with_the_adapter_and_reads_users_without_it(
    sample_db, tmp_path
):
    from dpl_engine.tuning.personal import personal_path
    from dpl_tui.app import DplApp

    path = real_adapter(tmp_path / "voice.gguf")
    own = "A1USER"  # a user with a kept per-user adapter on top of "voice"
    real_adapter(personal_path(path, own), name=f"voice/{own}", digest="fedcba9876543210",
                 on="voice@0123456789ab")
    settings = Settings.load()
    settings.adapters["voice"] = str(path)
    settings.adapter = "voice"
    settings.save()
    app = DplApp(db_path=sample_db, embedder_factory=lambda _p: FakeEmbedder(),
                 prepare_ahead=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: "+ adapter voice" in app.model_status, 120)
        engine = app.engine()
        writer, reader = engine.generator, engine.analyst
        assert writer.model_id.endswith("+voice@0123456789ab")
        assert reader.model_id == writer.base.model_id and reader.adapter is None
        from models.base import SamplingParams

        messages = [{"role": "user", "content": "Review this guitar strap."}]
        params = SamplingParams(temperature=0.0, max_tokens=16, seed=1)
        assert writer.complete(messages, params)[0] != reader.complete(messages, params)[0]
        stacked = engine.writer(own)
        assert stacked.model_id == f"{writer.model_id}+voice/{own}@fedcba987654"
        assert engine.writer("ANOTHER") is writer
