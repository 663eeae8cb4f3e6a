"""Importing hand-made files: every layout and container, and every kind of bad line."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from user_store import UserStore, locations
from user_store.errors import BadLineError, IngestError
from user_store.ingest import MAX_LINE_BYTES, ingest_files


def good(n: int, **extra) -> dict:
    record = {
        "user_id": f"user{n}",
        "parent_asin": f"item{n % 3}",
        "asin": f"item{n % 3}",
        "rating": float(1 + n % 5),
        "title": f"title {n}",
        "text": f"review number {n}",
        "timestamp": 1_600_000_000_000 + n,
        "helpful_vote": n,
        "verified_purchase": True,
    }
    record.update(extra)
    return record


def line(record: dict) -> bytes:
    return json.dumps(record).encode() + b"\n"


# (line content, expected reason fragment); None marks a good line.
BAD_FILE: list[tuple[bytes, str | None]] = [
    (line(good(1)), None),
    (b'{"user_id": "user2", "parent_asin": "item2", "rating": 5.0,\n', "broken JSON"),
    (line({k: v for k, v in good(3).items() if k != "user_id"}), "missing user_id"),
    (line(good(4, user_id="   ")), "missing user_id"),
    (line({k: v for k, v in good(5).items() if k not in ("parent_asin", "asin")}), "missing"),
    (line(good(6, rating="five")), "not a number"),
    (line(good(7, rating=7)), "outside 1..5"),
    (line(good(8, rating=0.0)), "outside 1..5"),
    (line(good(9, rating=None)), "missing rating"),
    (line(good(10, rating=True)), "not a number"),
    (b'{"user_id": "user11", "parent_asin": "item1", "rating": NaN, "timestamp": 1}\n', "outside"),
    (line(good(12)).replace(b"review number", b"caf\xe9 \xff number"), "invalid UTF-8"),
    (line(good(13, text="x" * (MAX_LINE_BYTES + 10))), "longer than"),
    (line(good(14, text="Café crème, très bien 🎸")), None),
    (b"[1, 2, 3]\n", "not an object"),
    (b"\n", None),  # blank: not a record at all
    (line(good(16, text="lone \ud800 surrogate")), "invalid UTF-8"),
    (line(good(17, timestamp=None)), "missing timestamp"),
    (line(good(18, timestamp="yesterday")), "not a whole number"),
    (line(good(19, text=["not", "text"])), "not text"),
    (line(good(20, rating="4")), None),  # a numeric string is a number
    (line(good(21, timestamp=1_600_000_021)).rstrip(b"\n"), None),  # seconds; no final newline
]


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(content for content, _ in BAD_FILE))
    return path


def read_rejects(db: Path) -> list[dict]:
    path = locations.rejects_path(db)
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_bad_lines_are_rejected_and_good_ones_kept(tmp_path: Path, bad_file: Path) -> None:
    db = tmp_path / "x.db"
    with UserStore(db) as store:
        report = ingest_files(store, [bad_file])
        f = report.files[0]
        good_lines = [n for n, (c, why) in enumerate(BAD_FILE, 1) if why is None and c.strip()]
        bad_lines = {n: why for n, (_, why) in enumerate(BAD_FILE, 1) if why is not None}
        assert f.read == len(good_lines) + len(bad_lines)
        assert (f.inserted, f.rejected) == (len(good_lines), len(bad_lines))
        assert report.rejects_path == locations.rejects_path(db)
        for n in good_lines:
            record = json.loads(BAD_FILE[n - 1][0])
            stored = store.review(record["user_id"], record["parent_asin"])
            assert stored is not None, f"good line {n} was not stored"
            assert stored.text == record["text"]
        assert store.review("user14", "item2").text == "Café crème, très bien 🎸"
        assert store.review("user20", "item2").rating == 4.0
        assert store.review("user21", "item0").timestamp == 1_600_000_021_000
    rejects = read_rejects(db)
    assert {r["line"]: r["reason"] for r in rejects}.keys() == bad_lines.keys()
    for r in rejects:
        assert bad_lines[r["line"]] in r["reason"], r
        assert r["file"] == str(bad_file) and r["run"] == f.run_id
        assert len(r["raw"]) <= 300
    # The rejects file is a record of bad input, not a reason to lose anything on a re-run.
    with UserStore(db) as store:
        again = ingest_files(store, [bad_file]).files[0]
        assert (again.inserted, again.duplicates, again.rejected) == (0, f.inserted, f.rejected)


def test_strict_stops_at_the_first_bad_line(tmp_path: Path, bad_file: Path) -> None:
    with UserStore(tmp_path / "x.db") as store:
        with pytest.raises(BadLineError) as caught:
            ingest_files(store, [bad_file], strict=True)
        assert caught.value.line == 2 and "broken JSON" in caught.value.reason
        assert str(bad_file) in str(caught.value)
        assert store.review("user1", "item1") is not None  # the good line before it is kept
        assert store.stats().reviews == 1
        run = store.import_runs()[0]
        assert (run.read, run.rejected, run.finished_at is not None) == (2, 1, True)


def test_files_that_cannot_be_imported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl.gz"
    blank.write_bytes(gzip.compress(b"\n\n"))
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\nnothing to import\n")
    other = tmp_path / "other.jsonl"
    other.write_text('{"name": "x", "value": 1}\n')
    array = tmp_path / "array.json"
    array.write_text('[{"user_id": "u"}]\n')
    meta = tmp_path / "meta.jsonl"
    meta.write_text('{"parent_asin": "i", "title": "A thing"}\n')
    cases = [
        (tmp_path / "missing.jsonl", "no such file"),
        (empty, "empty"),
        (blank, "no records"),
        (text, "unknown format"),
        (other, "unknown review format"),
        (array, "JSON array"),
        (meta, "--meta"),
        (tmp_path, "folder"),
    ]
    with UserStore(tmp_path / "x.db") as store:
        for path, message in cases:
            with pytest.raises(IngestError, match=message) as caught:
                ingest_files(store, [path])
            assert str(path) in str(caught.value)
        with pytest.raises(IngestError, match="holds reviews"):
            ingest_files(store, [], [_write_jsonl(tmp_path / "r.jsonl", [good(1)])])
        with pytest.raises(IngestError, match="does not match"):
            ingest_files(store, [tmp_path / "r.jsonl"], fmt="amazon2014")
        with pytest.raises(IngestError, match="Unknown format"):
            ingest_files(store, [tmp_path / "r.jsonl"], fmt="parquet")
        # A bad file anywhere in the list stops the import before anything is written.
        with pytest.raises(IngestError, match="missing.jsonl"):
            ingest_files(store, [tmp_path / "r.jsonl", tmp_path / "missing.jsonl"])
        assert store.stats().reviews == 0 and store.import_runs() == []


def _write_jsonl(path: Path, records: list[dict], gz: bool = False) -> Path:
    data = b"".join(line(r) for r in records)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_layouts_2014_2018_and_metadata(tmp_path: Path) -> None:
    r2014 = {
        "reviewerID": "A1",
        "asin": "B1",
        "reviewerName": "Ann",
        "helpful": [3, 4],
        "reviewText": "Solid stand.",
        "overall": 4.0,
        "summary": "Good",
        "unixReviewTime": 1_300_000_000,
        "reviewTime": "03 13, 2011",
    }
    no_unix = {**r2014, "reviewerID": "A2", "unixReviewTime": None}
    r2018 = {
        "reviewerID": "A3",
        "asin": "B1",
        "overall": 5.0,
        "summary": "Great",
        "reviewText": "Loud.",
        "unixReviewTime": 1_500_000_000,
        "vote": "1,234",
        "verified": True,
        "style": {"Size:": "L"},
    }
    meta_2023 = {
        "parent_asin": "B1",
        "title": "Guitar Stand",
        "description": ["Folds flat.", "Steel."],
        "categories": ["Musical Instruments", "Stands"],
        "main_category": "Musical Instruments",
    }
    meta_2014 = {
        "asin": "B2",
        "title": "Capo",
        "description": "Quick release.",
        "categories": [["Musical Instruments", "Accessories"], ["Capos"]],
    }
    p2014 = _write_jsonl(tmp_path / "r2014.json.gz", [r2014, no_unix], gz=True)
    p2018 = _write_jsonl(tmp_path / "r2018.json", [r2018])
    pmeta = _write_jsonl(tmp_path / "meta.jsonl", [meta_2023, meta_2014])
    with UserStore(tmp_path / "x.db") as store:
        report = ingest_files(store, [p2014, p2018], [pmeta])
        assert [f.format for f in report.files] == ["meta", "amazon2014", "amazon2018"]
        a1 = store.review("A1", "B1")
        assert (a1.rating, a1.title, a1.text, a1.helpful_votes, a1.timestamp, a1.source) == (
            4.0,
            "Good",
            "Solid stand.",
            3,
            1_300_000_000_000,
            "amazon2014",
        )
        assert store.review("A2", "B1").timestamp == 1_299_974_400_000  # from reviewTime
        assert store.review("A3", "B1").helpful_votes == 1234
        stand = store.item("B1")
        assert (stand.title, stand.description, stand.metadata_missing) == (
            "Guitar Stand",
            "Folds flat.\nSteel.",
            False,
        )
        assert stand.categories == ("Musical Instruments", "Stands")
        assert store.item("B2").categories == ("Musical Instruments", "Accessories", "Capos")
        assert [i.id for i in store.search_items("steel")] == ["B1"]
        # Metadata arriving after the reviews replaces the placeholder title.
        _write_jsonl(tmp_path / "late.jsonl", [{**r2014, "asin": "B9"}])
        ingest_files(store, [tmp_path / "late.jsonl"])
        assert store.item("B9").metadata_missing
        _write_jsonl(tmp_path / "late-meta.jsonl", [{"parent_asin": "B9", "title": "Pick"}])
        meta_report = ingest_files(store, [], [tmp_path / "late-meta.jsonl"]).files[0]
        assert (meta_report.inserted, meta_report.updated) == (0, 1)
        assert (store.item("B9").title, store.item("B9").metadata_missing) == ("Pick", False)
        assert [i.id for i in store.search_items("pick")] == ["B9"]


def test_csv_plain_and_gzipped(tmp_path: Path) -> None:
    header = ["user_id", "parent_asin", "rating", "title", "text", "timestamp", "helpful_vote"]
    rows = [
        ["u1", "i1", "5.0", "Multi-line", 'He said "wow",\nthen left.', "1600000000000", "2"],
        ["u2", "i1", "nope", "Bad rating", "x", "1600000000000", "0"],
        ["u3", "i2", "3", "Fine", "ok", "1600000000000", ""],
        ["u4", "i2", "3"],
    ]
    plain = tmp_path / "reviews.csv"
    with open(plain, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    packed = tmp_path / "copy.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    db = tmp_path / "x.db"
    with UserStore(db) as store:
        first, second = ingest_files(store, [plain, packed]).files
        assert (first.read, first.inserted, first.rejected) == (4, 2, 2)
        assert (second.inserted, second.duplicates, second.rejected) == (0, 2, 2)
        assert store.review("u1", "i1").text == 'He said "wow",\nthen left.'
        assert store.review("u3", "i2").helpful_votes == 0
    lines = {(r["file"], r["line"]) for r in read_rejects(db)}
    assert (str(plain), 4) in lines and (str(plain), 6) in lines  # physical line numbers


def test_a_damaged_gzip_keeps_what_came_before(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(line(good(n)) for n in range(1, 2001)))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    with UserStore(tmp_path / "x.db") as store:
        with pytest.raises(IngestError, match="damaged") as caught:
            ingest_files(store, [cut])
        assert str(cut) in str(caught.value)
        kept = store.stats().reviews
        assert 0 < kept < 2000
