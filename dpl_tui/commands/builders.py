"""What several commands build the same way: the engine over the store and the models the
options name, the evaluation over a split, and the split the threshold options pick.

Models load inside these functions, only once a command runs, so ``dpl --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..configs import EngineOptions, EvalRequest, SplitThresholds, command_engine_config

if TYPE_CHECKING:
    from dpl_engine import Engine
    from dpl_engine.evaluation.runner import EvalConfig, Evaluation
    from dpl_engine.evaluation.split import Split, SplitParams
    from user_store import UserStore
    from user_store.config import Settings


def command_engine(
    store: UserStore,
    options: EngineOptions,
    *,
    model: str | None,
    adapter: str | None = None,
    personal: bool = True,
) -> Engine:
    """The engine of `dpl compare`, `dpl generate` and `dpl prepare` without a split: the
    saved settings with ``options`` over them, the model and adapter named or saved."""
    from dpl_engine import Engine
    from user_store.config import Settings

    from ..loading import ModelPair, embedder_factory, embedder_id

    settings = Settings.load()
    config = command_engine_config(settings, options)
    models = ModelPair(model, adapter, settings, personal=personal)
    return Engine(
        store,
        models.writer,
        embedder_factory(settings, model),
        config,
        embedder_id=embedder_id(settings, model),
        analyst=models.analyst_factory,
        personal=models.personal_factory,
    )


def evaluation(
    store: UserStore,
    chosen: Split,
    config: EvalConfig,
    settings: Settings,
    request: EvalRequest,
) -> Evaluation:
    """The evaluation of ``config`` on split ``chosen`` with the request's models (and its
    judge, loaded when first asked for)."""
    from dpl_engine.evaluation import runner as ev

    from ..loading import ModelPair, embedder_factory, embedder_id

    judge_path = request.judge_model
    judge = _generator_factory(str(judge_path)) if judge_path else None
    models = ModelPair(request.model, request.adapter, settings, personal=request.personal)
    return ev.Evaluation(
        store,
        chosen,
        models.writer,
        embedder_factory(settings, request.model),
        config,
        embedder_id=embedder_id(settings, request.model),
        judge=judge,
        analyst=models.analyst_factory,
        personal=models.personal_factory,
    )


def _generator_factory(path: str | None):
    def load():
        from models.llama import load_generator

        return load_generator(path)

    return load


def chosen_split(store: UserStore, thresholds: SplitThresholds) -> Split:
    """The split the thresholds give, else the latest stored one, else the paper's."""
    from dpl_engine import EngineError
    from dpl_engine.evaluation import split as split_mod

    chosen = None if thresholds.given else split_mod.load(store)
    if chosen is None:
        params = thresholds.params()
        chosen = split_mod.prepare(store, params)
        if not chosen.users:
            raise EngineError(no_users_message(store, params, 20))
    return chosen


def no_users_message(store: UserStore, params: SplitParams, min_users: int) -> str:
    """Why a split is empty, and thresholds that keep at least ``min_users`` users."""
    from dpl_engine.evaluation import split as split_mod
    from user_store.eval_store import EvalStore

    rows = EvalStore(store).review_rows()
    found = split_mod.suggest(rows, params, min_users=min_users)
    lines = [f"No user is left with {params.describe()}."]
    if found:
        lines.append(f"Thresholds that keep at least {min_users} users (strictest first):")
        for s in found:
            lines.append(
                f"  {_flags(s.params)}  ->  {s.users} users, {s.items} items, {s.reviews} reviews"
            )
    else:
        lines.append(f"No thresholds on the grid keep {min_users} users; import more reviews.")
    return "\n".join(lines)


def _flags(params: SplitParams) -> str:
    return (
        f"--min-chars {params.min_chars} --min-user-reviews {params.min_user_reviews} "
        f"--min-item-reviewers {params.min_item_reviewers}"
    )
