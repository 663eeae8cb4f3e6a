"""Write what the app knows about one user (target, comparisons, measured and extracted
differences, profile, generations with their scores) to Markdown or JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from user_store import StoredGeneration

    from .backend import Session

Format = Literal["markdown", "json"]
EXPORT_VERSION = 1


@dataclass(frozen=True)
class ExportRequest:
    path: Path
    format: str = "markdown"
    """'markdown' or 'json'."""


@dataclass(frozen=True)
class ExportBundle:
    user_id: str
    target: Any = None
    retrieved: list[Any] = field(default_factory=list)
    comparisons: list[Any] = field(default_factory=list)
    measured: list[Any] = field(default_factory=list)
    differences: list[Any] = field(default_factory=list)
    profile: Any = None
    generations: list[Any] = field(default_factory=list)
    """This session's GenerationResults."""
    scores: dict[int, dict[str, float]] = field(default_factory=dict)
    stored_generations: list[Any] = field(default_factory=list)
    """Every generation the store keeps for the user."""


def default_export_path(user_id: str, fmt: str) -> Path:
    from user_store import locations

    stamp = datetime.now(tz=UTC).strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in user_id)
    return locations.exports_dir() / f"dpl-{safe}-{stamp}.{'json' if fmt == 'json' else 'md'}"


def bundle_from_session(
    session: Session, stored: list[StoredGeneration] | None = None
) -> ExportBundle:
    return ExportBundle(
        user_id=session.user_id,
        target=session.target,
        retrieved=list(session.retrieved),
        comparisons=list(session.comparisons),
        measured=list(session.measured),
        differences=list(session.differences),
        profile=session.profile,
        generations=list(session.results),
        scores=dict(session.scores),
        stored_generations=list(stored or []),
    )


def plain_data(value: Any) -> Any:
    """Dataclasses, tuples and numpy scalars as JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain_data(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def _checked(bundle: ExportBundle) -> tuple[Any, list[Any], dict[str, list[Any]]]:
    """The measured accounts (overall, per item) and the verdicts on the model's entries."""
    from dpl_engine.method import describe, informative

    overall, per_item = describe.accounts(bundle.measured)
    return overall, per_item, informative.check_all(bundle.differences, bundle.comparisons)


def to_json(bundle: ExportBundle) -> str:
    overall, per_item, verdicts = _checked(bundle)
    data = {
        "dpl_export": EXPORT_VERSION,
        "user_id": bundle.user_id,
        "measured_account": plain_data({"overall": overall, "items": per_item}),
        **plain_data(bundle),
        "informative": plain_data(verdicts),
    }
    data["scores"] = {str(k): v for k, v in bundle.scores.items()}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in (text or "").splitlines()) or ">"


def to_markdown(bundle: ExportBundle) -> str:
    out: list[str] = [f"# dpl export: user {bundle.user_id}", ""]
    t = bundle.target
    if t is not None:
        out += [
            "## Target",
            "",
            f"- Item: {t.item.title} (`{t.item.id}`)",
            f"- Rating: {t.rating:g}",
            f"- Title: {t.title}",
            f"- Held out: {'yes' if t.held_out is not None else 'no'}",
            "",
        ]
    if bundle.retrieved:
        out += ["## Retrieved past reviews", ""]
        out += [
            f"{r.rank}. {r.entry.item.title} (score {r.score:.3f}): {r.entry.review.title}"
            for r in bundle.retrieved
        ]
        out.append("")
    if bundle.comparisons:
        out += ["## Comparison users", ""]
        for c in bundle.comparisons:
            out += [
                f"### {c.item.title}",
                "",
                f"The user's review ({c.user_review.rating:g}★):",
                "",
                _quote(c.user_review.text),
                "",
                "| User | Cluster | Distance | Similarity | Rating |",
                "|---|---|---|---|---|",
            ]
            out += [
                f"| {u.user_id} | {u.cluster} | {u.distance:.3f} | {u.similarity:.3f} "
                f"| {u.rating:g} |"
                for u in c.users
            ]
            out.append("")
            for u in c.users:
                out += [f"**{u.user_id}** ({u.rating:g}★):", "", _quote(u.review.text), ""]
    overall, per_item, verdicts = _checked(bundle)
    titles = {c.item.id: c.item.title for c in bundle.comparisons}
    if overall is not None:
        out += ["## Measured differences in words (counted from the texts, no model)", ""]
        if len(per_item) > 1:
            out += [overall.text, ""]
        out += [f"- {titles.get(a.item_id, a.item_id)}: {a.text}" for a in per_item]
        out.append("")
    if bundle.measured:
        out += ["## Measured differences (user vs. mean of comparison users)", ""]
        for m in bundle.measured:
            out += [f"### `{m.item_id}`", "", "| Measure | User | Others |", "|---|---|---|"]
            for f in dataclasses.fields(m.user):
                out.append(
                    f"| {f.name} | {getattr(m.user, f.name):.3f} "
                    f"| {getattr(m.others, f.name):.3f} |"
                )
            out.append("")
    if bundle.differences:
        out += ["## Differences (the model's, not checked against the texts)", ""]
        for d in bundle.differences:
            out += [f"### {titles.get(d.item_id, d.item_id)}", ""]
            flags = {v.dimension: v for v in verdicts.get(d.item_id, []) if not v.informative}

            def flag(key: str, flags: dict[str, Any] = flags) -> str:
                return f" *(uninformative: {flags[key].reason})*" if key in flags else ""

            if d.structured:
                out += [
                    f"- Writing: {d.writing}{flag('writing')}",
                    f"- Emotional: {d.emotional}{flag('emotional')}",
                    f"- Semantic: {d.semantic}{flag('semantic')}",
                ]
            else:
                out += [f"Free text (no valid JSON){flag('raw')}:", "", _quote(d.raw)]
            out.append("")
    if bundle.profile is not None:
        out += [f"## Profile ({bundle.profile.kind})", "", bundle.profile.text, ""]
    if bundle.generations:
        out += ["## Generations in this session", ""]
        for i, g in enumerate(bundle.generations):
            scores = bundle.scores.get(i)
            score = (
                f", ROUGE-1 {scores['rouge1']:.3f}, ROUGE-L {scores['rougeL']:.3f}"
                if scores
                else ""
            )
            out += [
                f"### {i + 1}. {g.method} ({g.model_id}, prompt {g.prompt_version}{score})",
                "",
                _quote(g.text),
                "",
            ]
        if t is not None and t.held_out is not None:
            out += ["### The real review", "", _quote(t.held_out.text), ""]
    if bundle.stored_generations:
        out += ["## All stored generations", ""]
        for s in bundle.stored_generations:
            out += [
                f"- {s.created_at} · item `{s.item_id}` · {s.method} · {s.model_id}",
                "",
                _quote(s.text),
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def write_export(bundle: ExportBundle, request: ExportRequest) -> Path:
    text = to_json(bundle) if request.format == "json" else to_markdown(bundle)
    path = request.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
