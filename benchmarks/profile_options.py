"""Compare stored `dpl eval` runs that differ only in the dpl profile's options, user by user.

    python -m benchmarks.profile_options DB BASE_RUN OTHER_RUN [OTHER_RUN ...] [--out FILE.md]

Each run's ``dpl`` rows are matched by (user, seed) with the base run's; the table gives
each option's mean difference, users better/worse and the two-sided Wilcoxon p per metric
(the same test as ``dpl eval``'s paired table), the share of uninformative LLM
differences, and each run's engine options. Run the variants with the same split,
users, seeds and sampling, so the differences (cached) are shared and only the profile
and the review change.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from benchmarks.common import write_results


def main() -> None:
    from dpl_engine.evaluation.report import (
        METRIC_LABELS,
        PAIRED_METRICS,
        PairedDiff,
        _wilcoxon_p,
        format_paired,
    )
    from user_store import UserStore
    from user_store.eval_store import EvalStore

    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    ap.add_argument("base", type=int)
    ap.add_argument("others", type=int, nargs="+")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    store = UserStore(args.db)
    evals = EvalStore(store)

    def dpl_rows(run_id: int) -> dict:
        return {(r.user_id, r.seed): r for r in evals.results(run_id) if r.method == "dpl"}

    def options(run_id: int) -> str:
        engine = evals.run(run_id).config["engine"]
        on = [k for k in ("measured_in_profile", "drop_uninformative") if engine.get(k)]
        return ", ".join(on) or "defaults"

    base = dpl_rows(args.base)
    lines = [
        f"Base: run {args.base} ({options(args.base)}), {len(base)} dpl results; "
        "each option minus the base, per user (mean over seeds): mean difference "
        "(two-sided Wilcoxon p; users better ↑, worse ↓).",
        "",
        "| run | options | users | "
        + " | ".join(METRIC_LABELS[m] for m in PAIRED_METRICS if m != "judge")
        + " | uninformative LLM differences |",
        "|---|---|---:|" + "---:|" * (len(PAIRED_METRICS) - 1) + "---:|",
    ]
    for run_id in [args.base, *args.others]:
        rows = dpl_rows(run_id)
        users = sorted({u for u, s in rows if (u, s) in base})
        cells = []
        for metric in PAIRED_METRICS:
            if metric == "judge":
                continue
            if run_id == args.base:
                mean = statistics.fmean(getattr(r, metric) or 0.0 for r in rows.values())
                cells.append(f"{mean:.4f}")
                continue
            diffs = []
            for user in users:
                seeds = [s for u, s in rows if u == user and (u, s) in base]
                mine = [getattr(rows[(user, s)], metric) for s in seeds]
                theirs = [getattr(base[(user, s)], metric) for s in seeds]
                if any(v is None for v in mine + theirs):
                    continue
                diffs.append(statistics.fmean(mine) - statistics.fmean(theirs))
            d = PairedDiff(
                method=str(run_id),
                baseline=str(args.base),
                metric=metric,
                users=len(diffs),
                mean_diff=statistics.fmean(diffs) if diffs else 0.0,
                better=sum(x > 0 for x in diffs),
                worse=sum(x < 0 for x in diffs),
                p_value=_wilcoxon_p(diffs) if diffs else None,
            )
            cells.append(format_paired(d))
        flagged = sum(r.uninformative for r in rows.values())
        total = sum(r.differences for r in rows.values())
        share = f"{flagged / total:.0%} ({flagged} of {total})" if total else "n/a"
        lines.append(
            f"| {run_id} | {options(run_id)} | {len(users)} | "
            + " | ".join(cells)
            + f" | {share} |"
        )
    store.close()
    text = "\n".join(lines) + "\n"
    if args.out is None:
        print(text)
    else:
        write_results(args.out, text)


if __name__ == "__main__":
    main()
