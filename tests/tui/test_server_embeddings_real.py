"""The app on a real server for both parts: llama-cpp-python's OpenAI-compatible server on
loopback serves the chat model and, started with ``--embedding``, the embeddings the
comparison users are clustered on. Nothing is loaded in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dpl_tui.screens.comparison import ComparisonScreen
from dpl_tui.screens.user import UserScreen
from dpl_tui.screens.users import UsersScreen
from models.server import ServerConfig, ServerEmbedder
from models.server import embedder_id as server_embedder_id
from tests.models.llama_server import SERVED, llama_server
from tests.tui.conftest import wait_until
from tests.tui.test_main_flow_real import SLOW, USER, short_engine
from user_store import UserStore
from user_store.config import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedding_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(tmp_path_factory.mktemp("llama-embed"), "--embedding", "True") as url:
        yield url


async def test_the_app_embeds_through_the_servers_embedding_model(embedding_server, sample_db):
    from dpl_tui.app import DplApp

    entry = ServerConfig(name="lab", url=embedding_server, model=SERVED,
                         embedding_model=SERVED, context_length=8192, timeout_s=120.0)  # fmt: skip
    settings = Settings.load()
    settings.servers["lab"] = entry.to_dict()
    settings.save()
    remote_id = server_embedder_id(entry)

    app = DplApp(db_path=sample_db, model="lab", engine_factory=short_engine)
    async with app.run_test(size=(140, 42)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, UsersScreen))
        # the loader announces the embedder last; then both parts are connected
        await wait_until(
            pilot, lambda: SERVED in app.model_status and not app.loading_models, SLOW
        )
        embedder = app.models.embedder()
        assert isinstance(embedder, ServerEmbedder) and embedder.model_id == remote_id
        assert embedder.dim == 576  # SmolLM2-135M's hidden size, mean-pooled per text

        await pilot.press("slash", *USER, "enter", "enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, UserScreen) and app.screen.held_out is not None
        )
        await pilot.press("c")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, ComparisonScreen) and app.screen.view is not None,
            SLOW,
        )
        comparisons = app.screen.view.comparisons
        assert comparisons and all(0 < len(c.users) <= 4 for c in comparisons)

    with UserStore(sample_db) as store:
        rows = dict(
            store.conn.execute("SELECT model_id, COUNT(*) FROM embeddings GROUP BY model_id")
        )
    compared = {(c.item.id, u.user_id) for c in comparisons for u in c.users}
    assert set(rows) == {remote_id}, "every vector came from the server's embedder"
    assert rows[remote_id] > len(compared)  # the user's own review and every other reviewer's
