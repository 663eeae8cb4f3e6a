"""``dpl ingest``, ``stats``, ``users``, ``user`` and ``locate`` through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dpl_tui.cli import app
from user_store import UserStore, locations

runner = CliRunner()


def dpl(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_sample_import_then_browse(dpl_home: Path) -> None:
    first = dpl("ingest", "--sample")
    assert first.exit_code == 0, first.output
    assert "Import summary" in first.output
    assert "2,604" in first.output
    # `make run` imports the sample on every start: quiet, one line, nothing changes.
    again = dpl("ingest", "--sample", "--quiet")
    assert again.exit_code == 0
    summary = [x for x in again.stdout.splitlines() if x.strip()]
    assert len(summary) == 1 and "0 inserted" in summary[0] and "2,604 duplicates" in summary[0]

    stats = json.loads(dpl("stats", "--json").stdout)
    assert (stats["users"], stats["items"], stats["reviews"]) == (203, 724, 2_604)
    assert stats["db_path"] == str(dpl_home / "dpl.db")
    assert [r["inserted"] for r in stats["import_runs"]] == [2_604, 0]
    assert "reviews" in dpl("stats").stdout

    users = json.loads(dpl("users", "--json", "--min-reviews", "30").stdout)
    assert users and all(u["review_count"] >= 30 for u in users)
    assert users == sorted(users, key=lambda u: -u["review_count"])
    top = users[0]["user_id"]
    by_prefix = json.loads(dpl("users", "--json", "--search", top[:6]).stdout)
    assert top in [u["user_id"] for u in by_prefix]
    by_words = json.loads(dpl("users", "--json", "--search", "tuner", "--limit", "0").stdout)
    assert 0 < len(by_words) < 203
    negative = dpl("users", "--limit", "-1")
    assert negative.exit_code == 2 and "--limit" in negative.output

    history = json.loads(dpl("user", top, "--json").stdout)
    assert len(history["reviews"]) == users[0]["review_count"]
    stamps = [r["timestamp"] for r in history["reviews"]]
    assert stamps == sorted(stamps)
    assert all(r["item"]["id"] == r["item_id"] for r in history["reviews"])
    table = dpl("user", top)
    assert table.exit_code == 0 and top in table.stdout


def test_json_report_and_explicit_db(tmp_path: Path, mi5: Path) -> None:
    db = tmp_path / "elsewhere" / "my.db"
    result = dpl(
        "ingest",
        str(mi5 / "reviews.jsonl.gz"),
        "--meta",
        str(mi5 / "meta.jsonl.gz"),
        "--db",
        str(db),
        "--json",
    )
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert [f["inserted"] for f in report["files"]] == [900, 10_261]
    assert report["store"] == {"users": 1_429, "items": 900, "reviews": 10_261, "db_path": str(db)}
    assert report["rejects_path"] is None
    assert not locations.default_db_path().exists()


def test_bad_input_exit_codes(tmp_path: Path, dpl_home: Path) -> None:
    missing = dpl("ingest", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 1
    assert "nope.jsonl" in missing.stderr and "Traceback" not in missing.output
    assert len(missing.stderr.strip().splitlines()) == 1
    assert not (dpl_home / "dpl.db").exists()  # nothing is created for a file that can't import

    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert dpl("ingest", str(empty)).exit_code == 1
    assert dpl("ingest").exit_code == 1

    mixed = tmp_path / "mixed.jsonl"
    good = {
        "user_id": "u1",
        "parent_asin": "i1",
        "rating": 5.0,
        "title": "t",
        "text": "x",
        "timestamp": 1_600_000_000_000,
    }
    mixed.write_text(
        json.dumps(good)
        + "\n"
        + '{"user_id": "u2", "rating": 9}\n'
        + json.dumps({**good, "user_id": "u3"})
        + "\n"
    )
    lenient = dpl("ingest", str(mixed))
    assert lenient.exit_code == 0
    assert "1 line(s) rejected" in lenient.stderr
    assert str(locations.rejects_path(dpl_home / "dpl.db")) in lenient.stderr

    strict_db = tmp_path / "strict.db"
    strict = dpl("ingest", str(mixed), "--strict", "--db", str(strict_db))
    assert strict.exit_code == 2
    assert f"{mixed}:2:" in strict.stderr and "Traceback" not in strict.output
    with UserStore(strict_db) as store:
        assert store.stats().reviews == 1

    # --format describes named files; alone with --sample it would be silently ignored.
    sample_db = tmp_path / "sample.db"
    sample_format = dpl("ingest", "--sample", "--format", "csv", "--db", str(sample_db))
    assert sample_format.exit_code == 1
    assert "--format csv" in sample_format.stderr and "Drop --format" in sample_format.stderr
    assert not sample_db.exists()
    unknown = dpl("ingest", str(mixed), "--sample", "--format", "nope", "--db", str(strict_db))
    assert unknown.exit_code == 1 and "'nope'" in unknown.stderr

    help_text = dpl("ingest", "--help").stdout
    assert "Exit status" in " ".join(help_text.split())


def test_reading_a_missing_database_is_an_error(dpl_home: Path) -> None:
    for args in (("stats",), ("users",), ("user", "A1")):
        result = dpl(*args)
        assert result.exit_code == 1
        assert "dpl ingest --sample" in result.stderr
    assert not (dpl_home / "dpl.db").exists()


def test_unknown_user_is_one_line(dpl_home: Path) -> None:
    dpl("ingest", "--sample", "--quiet")
    result = dpl("user", "[bold]nobody")
    assert result.exit_code == 1
    assert "'[bold]nobody'" in result.stderr


def test_locate(tmp_path: Path, dpl_home: Path) -> None:
    places = json.loads(dpl("locate", "--json").stdout)
    assert places == {
        "database": str(dpl_home / "dpl.db"),
        "config": str(dpl_home / "config.json"),
        "rejects": str(dpl_home / "dpl.rejects.jsonl"),
        "data_dir": str(dpl_home),
    }
    other = json.loads(dpl("locate", "--json", "--db", str(tmp_path / "x.db")).stdout)
    assert other["rejects"] == str(tmp_path / "x.rejects.jsonl")
    assert "not created yet" in dpl("locate").stdout


@pytest.mark.parametrize("command", ["ingest", "stats", "users", "user", "locate"])
def test_every_command_has_help(command: str) -> None:
    result = dpl(command, "--help")
    assert result.exit_code == 0
    assert "--db" in result.stdout and "--json" in result.stdout


def test_real_entry_point_with_progress(tmp_path: Path, mi5: Path) -> None:
    """The installed ``dpl`` script, as a user runs it (progress bar to stderr)."""
    exe = Path(sys.executable).with_name("dpl")
    db = tmp_path / "p.db"
    done = subprocess.run(
        [str(exe), "ingest", str(mi5 / "reviews.jsonl.gz"), "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "10,261" in done.stdout
    assert "reviews.jsonl.gz" in done.stderr  # the progress bar's label
