"""``dpl compare`` and ``dpl generate`` print each item's differences on the terminal the
moment its call finishes, and keep the items still to come listed as pending."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from benchmarks.common import copy_db
from dpl_engine import Engine, EngineConfig
from dpl_tui.commands.engine_cmds import _ProgressView
from tests.engine.fakes import FakeEmbedder, FakeGenerator
from user_store import UserStore

USER = "A34O0KQV4QXWNQ"


def test_items_print_as_they_arrive_and_the_rest_stay_pending(mi5_db: Path, tmp_path: Path):
    store = UserStore(copy_db(mi5_db, tmp_path / "dev.db"))
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    engine = Engine(store, FakeGenerator(), FakeEmbedder(), EngineConfig(m=2))
    target = engine.held_out_target(USER)
    seen: list[tuple[int, int, str]] = []  # pending count, printed so far, item
    with _ProgressView(enabled=True, console=console) as view:

        def update(event) -> None:
            view.update(event)
            if event.step == "differences" and event.value is not None:
                seen.append((len(view.pending), len(view.shown), event.value.item_id))

        comparisons = engine.comparisons(target, progress=update)
        assert list(view.pending) == [c.item.id for c in comparisons]
        differences = engine.differences(target, progress=update)
    store.close()

    total = len(comparisons)
    assert total >= 2 and len(differences) == total
    # After the i-th item arrives, total - i remain pending and i have been printed.
    assert [(p, s) for p, s, _ in seen] == [(total - i, i) for i in range(1, total + 1)]
    printed = out.getvalue()
    positions = [printed.index(f"{c.item.title or c.item.id}\n  writing:") for c in comparisons]
    assert positions == sorted(positions)
    assert printed.count("writing: Plainer words, shorter sentences.") == total
