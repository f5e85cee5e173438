"""What a run reports: each photo's ``--json`` object (docs/cli.md), the counts of the summary line,
and the exit code scripts and cron read (docs/exit-codes.md)."""

from __future__ import annotations

import json
from pathlib import Path

from clipsort.errors import ExitCode, FileFailure
from clipsort.labels.decide import Judgement
from clipsort.render import summary_line
from clipsort.run.report import PhotoResult, Report


def test_a_photo_json_object_has_the_documented_fields_and_only_those_that_apply():
    plain = PhotoResult(Path("/p/a.jpg"), {"red": 0.123456789, "blue": 0.5}, ("red",), "tagged")
    assert plain.to_json() == {
        "path": "/p/a.jpg",
        "scores": {"red": 0.123457, "blue": 0.5},  # six decimals
        "labels": ["red"],
        "action": "tagged",
    }
    full = PhotoResult(
        Path("/p/a.jpg"),
        {"red": 0.9},
        ("red",),
        "moved",
        destination=Path("/s/red/a.jpg"),
        sidecar=Path("/p/a.jpg.xmp"),
        dry_run=True,
        explained={"red": Judgement(0.9, 0.1234567, True, "chosen")},
        note="RAW+JPEG pair",
    )
    record = json.loads(json.dumps(full.to_json()))
    assert record == {
        "path": "/p/a.jpg",
        "scores": {"red": 0.9},
        "labels": ["red"],
        "action": "moved",
        "destination": "/s/red/a.jpg",
        "sidecar": "/p/a.jpg.xmp",
        "note": "RAW+JPEG pair",
        "dry_run": True,
        "thresholds": {"red": 0.123457},  # six decimals too
        "why": {"red": "chosen"},
    }


def test_the_summary_counts_and_rate_are_the_runs_own():
    report = Report("tag", started=100.0)
    assert (report.found, report.embedded, report.cached, report.unchanged, report.dry_run) == (0, 0, 0, 0, False)
    report.found, report.embedded, report.cached, report.unchanged = 3, 1, 2, 1
    for action in ("tagged", "tagged", "untagged"):
        report.record(PhotoResult(Path("x.jpg"), {}, (), action))
    report.fail(FileFailure(Path("bad.jpg"), "truncated"))
    report.finished = 101.5
    assert report.elapsed == 1.5 and report.scored == 3 and report.rate == 2.0
    assert summary_line(report) == (
        "tagged 2, untagged 1, failed 1, sidecars unchanged 1 | 3 photos in 1.5 s, 2.0 images/s"
        " | embedded 1, from cache 2"
    )


def test_the_summary_counts_clips_apart_and_files_that_are_not_photos_last():
    report = Report("tag", started=0.0, finished=2.0, found=8, videos=6, embedded=8)
    for action in ["tagged"] * 8 + ["left-out"] * 2:
        report.record(PhotoResult(Path("x"), {}, (), action))
    assert summary_line(report).startswith("tagged 8, not photos 2 | 2 photos and 6 videos in 2.0 s")
    report.found = report.videos = 1
    assert "| 1 video in" in summary_line(report)
    empty = Report("tag", started=0.0, finished=1.0)
    empty.record(PhotoResult(Path("notes.txt"), {}, (), "left-out"))
    assert summary_line(empty).startswith("no photo or video found (not photos 1) | 0 photos in")


def test_a_run_that_took_no_time_reports_no_rate_and_a_short_one_its_rate():
    report = Report("index", started=5.0)
    report.finished = 5.0
    report.embedded = 4
    assert report.elapsed == 0.0 and report.rate == 0.0
    report.finished = 5.5
    assert report.rate == 8.0


def test_the_exit_code_is_0_done_3_some_failed_1_stopped():
    report = Report("sort")
    assert report.exit_code == ExitCode.OK == 0
    report.fail(FileFailure(Path("a.jpg"), "cannot move"))
    assert report.exit_code == ExitCode.PARTIAL == 3
    report.fatal = "no space left"
    assert report.exit_code == ExitCode.ERROR == 1
