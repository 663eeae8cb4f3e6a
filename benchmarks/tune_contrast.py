"""`dpl tune --contrast` against the same run without it, scored on the validation targets.

    python -m benchmarks.tune_contrast [--weight 1] [--examples 60] [--out DIR]

On a fresh import of the dev data in a private ``DPL_HOME``, with the README's split options
(``--min-user-reviews 6 --min-item-reviewers 3``, reviews in prompts cut at 600 characters):
two ``rag`` task adapters trained on the same targets with the same seed, one plain (A) and
one with the contrastive term (C: ``--contrast WEIGHT``, one negative per example); each is
scored by ``dpl eval --split val`` on the 40 users ``dpl tune`` holds out (seed 1, 128-token
reviews), and C is paired with A user by user (``dpl eval --report C --against A``). Every
step runs the ``dpl`` command a person would type. Writes each adapter's record, each run's
tables, the paired table and a log of the commands with their wall times into ``--out``.
Training takes most of an hour on two cores: run it on an otherwise idle machine.

Last, what the contrastive term is about, measured directly on the same 40 unseen users:
under the ``rag`` prompt of a user's validation target, is their own review more likely
(mean token log-likelihood, transformers over the same GGUF) than other users' profile
reviews of that item? Scored for the base model, A and C (``own_first.md``).
``--score HOME`` runs only this part, on the ``DPL_HOME`` of an earlier run.

``--cost`` instead measures what the term costs in training: steps of the bundled model on
examples of random tokens, plain against with one negative of the same length, each in a
process of its own (so each peak memory is its own), idle machine advised.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import DATA, REPO, RESULTS_DIR

SPLIT = ["--min-user-reviews", "6", "--min-item-reviewers", "3"]
PROMPTS = ["--max-review-chars", "600"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weight", type=float, default=1.0, help="--contrast of adapter C")
    ap.add_argument("--examples", type=int, default=60, help="--examples of both adapters")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR / "tune-contrast")
    ap.add_argument("--dpl", default=str(REPO / ".venv" / "bin" / "dpl"), help="dpl to run")
    ap.add_argument("--score", type=Path, default=None, metavar="HOME",
                    help="only score own reviews against others' with the adapters in HOME")
    ap.add_argument("--cost", action="store_true", help="only measure the training cost")
    ap.add_argument("--cost-of", choices=("plain", "contrast"), help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=6, help="with --cost: steps per run")
    ap.add_argument("--tokens", type=int, default=1024,
                    help="with --cost: prompt plus review tokens per sequence")
    args = ap.parse_args()
    if args.cost_of:
        print(json.dumps(cost_of(args.cost_of, args.steps, args.tokens)))
        return
    if args.cost:
        args.out.mkdir(parents=True, exist_ok=True)
        training_cost(args.steps, args.tokens, args.out)
        return
    if args.score is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        score_own_first(args.score, args.out)
        return

    home = Path(tempfile.mkdtemp(prefix="dpl-contrast-"))
    env = {**os.environ, "DPL_HOME": str(home), "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}
    db = home / "bench.db"
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = [f"# dpl tune --contrast {args.weight:g} against the plain run", "",
           f"Started {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}, {os.cpu_count()} CPUs.",
           ""]

    def dpl(title: str, *argv: str, stdout: Path | None = None) -> str:
        started = time.perf_counter()
        done = subprocess.run([args.dpl, *argv], env=env, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise SystemExit(f"{title} failed ({done.returncode}): {done.stderr.strip()[-800:]}")
        if stdout is not None:
            stdout.write_text(done.stdout, encoding="utf-8")
        shown = " ".join(a if a != str(db) else "DB" for a in argv)
        log.append(f"- {title}: `dpl {shown}` ({time.perf_counter() - started:.0f} s)")
        (out / "log.md").write_text("\n".join(log) + "\n", encoding="utf-8")
        return done.stdout

    dpl("import", "ingest", str(DATA / "reviews.jsonl.gz"), "--meta",
        str(DATA / "meta.jsonl.gz"), "--db", str(db))
    for name, extra in (("A", []), ("C", ["--contrast", f"{args.weight:g}"])):
        dpl(f"adapter {name}", "tune", "--method", "rag", "--name", f"rag-{name}",
            "--examples", str(args.examples), *SPLIT, *PROMPTS, *extra, "--db", str(db),
            "--json", stdout=out / f"adapter-{name}.json")
    for name in ("A", "C"):
        dpl(f"eval {name}", "eval", "--split", "val", "--users", "40", "--methods", "rag",
            "--seed", "1", "--max-tokens", "128", "--adapter", f"rag-{name}", *SPLIT,
            *PROMPTS, "--db", str(db), "--out", str(out / f"eval-{name}"))
    runs = sorted(r["run_id"] for r in json.loads(dpl("list", "eval", "--list", "--db",
                                                       str(db), "--json")))
    run_a, run_c = runs[-2:]
    dpl("paired", "eval", "--report", str(run_c), "--against", str(run_a), "--db", str(db),
        stdout=out / "paired.txt")
    log.append(f"\nFinished {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}; runs: "
               f"A = {run_a}, C = {run_c}.")
    (out / "log.md").write_text("\n".join(log) + "\n", encoding="utf-8")
    print((out / "paired.txt").read_text(encoding="utf-8"))
    score_own_first(home, out)


OTHERS = 4
"""Other users' reviews of the item each user's own is scored against (at most)."""


def score_own_first(home: Path, out: Path) -> None:
    """Per unseen user: own validation review against up to ``OTHERS`` other users' profile
    reviews of the same item, under the user's ``rag`` prompt, for the base model, A and C."""
    import copy
    import random
    import statistics

    os.environ["HF_HUB_OFFLINE"] = "1"
    from dpl_engine import Engine, EngineConfig
    from dpl_engine.evaluation import split as sp
    from dpl_engine.tuning import task as tune
    from models import training
    from models.adapters import inspect_adapter, read_adapter
    from models.llama import load_generator
    from models.registry import default_gguf_path
    from user_store import UserStore

    store = UserStore(home / "bench.db")
    chosen = sp.load(store)
    generator = load_generator(str(default_gguf_path()))

    def no_embedder():  # the rag prompt retrieves with BM25 only
        raise RuntimeError("the rag prompt needs no embedder")

    engine = Engine(store, generator, no_embedder, EngineConfig(max_review_chars=600),
                    exclude_reviews=chosen.hidden_reviews("val"))
    examples = []
    users = int(os.environ.get("DPL_BENCH_USERS", "40"))  # fewer for a quick look
    for user in (chosen.user(u) for u in tune.held_out_users(chosen, users)):
        own = store.review(user.user_id, user.val)
        others = sorted(u.user_id for u in chosen.users
                        if u.user_id != user.user_id and user.val in u.profile)
        random.Random(f"1:{user.user_id}").shuffle(others)
        if not others:
            continue
        target = engine.target(user.user_id, user.val, rating=own.rating, title=own.title)
        messages, _ = engine.prompt(target, "rag")
        example = tune.tokenize(generator, messages, own.text, 2048, 32,
                                [store.review(o, user.val).text for o in others[:OTHERS]])
        if example is not None:
            examples.append(example)
    base, shape = training.load_base(default_gguf_path(), "cpu")
    modules = [name for name, _ in base.named_modules()]
    rows = []
    for name in ("base", "A", "C"):
        model = base
        path = home / "adapters" / f"rag-{name}.gguf"
        if name != "base" and not path.exists():
            print(f"No adapter {path}: left out.")
            continue
        if name != "base":
            model = copy.deepcopy(base)
            training.merge_pairs(model, read_adapter(
                path, modules, architecture=shape.architecture, block_count=shape.block_count,
                n_head=shape.n_head, n_head_kv=shape.n_head_kv), inspect_adapter(path).alpha)
        model.eval()
        scores = [training.completion_scores(model, e) for e in examples]
        first = [s[0] > max(s[1:]) for s in scores]
        wins = [statistics.mean(s[0] > o for o in s[1:]) for s in scores]
        margin = [s[0] - statistics.mean(s[1:]) for s in scores]
        own = [s[0] for s in scores]
        rows.append((name, first, wins, margin, own))
    others = statistics.mean(len(e.negatives) for e in examples)
    lines = [
        f"# Own review against other users' reviews of the same item ({len(examples)} unseen "
        "users)",
        "",
        f"The validation target of each of the {users} users `dpl tune` holds out that has other "
        f"users' profile reviews of its item ({len(examples)} users; {others:.1f} other reviews "
        "each on average, at most 4), under the user's `rag` prompt (reviews cut at 600 "
        "characters); scores are mean token log-likelihoods in transformers over the bundled "
        "GGUF, the adapters merged in.",
        "",
        "| model | own review first | own above another, pairwise | own minus others, nats "
        "per token (mean) | own review's mean token log-likelihood (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, first, wins, margin, own in rows:
        lines.append(f"| {name} | {sum(first)} of {len(first)} ({statistics.mean(first):.0%}) "
                     f"| {statistics.mean(wins):.1%} | {statistics.mean(margin):+.3f} "
                     f"| {statistics.mean(own):.3f} |")
    text = "\n".join(lines) + "\n"
    (out / "own_first.md").write_text(text, encoding="utf-8")
    print(text)
    store.close()


if __name__ == "__main__":
    main()


def cost_of(kind: str, steps: int, tokens: int) -> dict:
    """One run of ``steps`` training steps in this process: seconds per step and peak memory."""
    import random
    import resource

    os.environ["HF_HUB_OFFLINE"] = "1"
    from models import training
    from models.registry import default_gguf_path

    rng = random.Random(0)
    prompt = tokens * 3 // 4

    def ids(n: int) -> tuple[int, ...]:
        return tuple(rng.randrange(1000, 40000) for _ in range(n))

    examples = [training.TrainingExample(
        ids(prompt), ids(tokens - prompt),
        (ids(tokens - prompt),) if kind == "contrast" else ()) for _ in range(steps)]
    options = training.LoraOptions(warmup=0.0, contrast=1.0 if kind == "contrast" else 0.0)
    base, _ = training.load_base(default_gguf_path(), "cpu")
    result = training.train(training.with_lora(base, options), examples, options)
    return {"kind": kind, "step_s": result.seconds / result.steps,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}


def training_cost(steps: int, tokens: int, out: Path) -> None:
    import sys

    rows = []
    for kind in ("plain", "contrast"):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.tune_contrast", "--cost-of", kind, "--steps",
             str(steps), "--tokens", str(tokens)],
            cwd=REPO, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    plain, contrast = rows
    text = "\n".join([
        f"# Training cost of --contrast (one negative), {time.strftime('%Y-%m-%d')}",
        "",
        f"{steps} steps of the bundled model, rank 16 on 7 projections, {tokens} tokens per "
        f"sequence (a {tokens * 3 // 4}-token prompt), CPU, {os.cpu_count()} CPUs; each run "
        "in a process of its own.",
        "",
        "| run | s per step | peak memory (process) |",
        "|---|---:|---:|",
        f"| plain | {plain['step_s']:.2f} | {plain['peak_gib']:.2f} GiB |",
        f"| with one negative | {contrast['step_s']:.2f} | {contrast['peak_gib']:.2f} GiB |",
        f"| ratio | {contrast['step_s'] / plain['step_s']:.2f}x | "
        f"{contrast['peak_gib'] / plain['peak_gib']:.2f}x |",
        "",
    ])
    (out / "cost.md").write_text(text, encoding="utf-8")
    print(text)
