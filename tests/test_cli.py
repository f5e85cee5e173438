"""The command line: help, exit codes, stdout for results and stderr for people."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos, run_cli

from clipsort.cli import app

DOCS = Path(__file__).resolve().parents[1] / "docs"
MODEL = ["--model", f"local-dir:{COLOUR_MODEL}"]
SMALL = {"min_px": 200, "max_px": 500}


def commands() -> list[list[str]]:
    import typer

    group = typer.main.get_command(app)
    found = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found += [[name, sub] for sub in subcommands]
        else:
            found.append([name])
    return found


def test_every_command_has_help_with_text_and_is_documented(capsys):
    cli_doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert len(commands()) >= 5
    for command in commands():
        code, out, _ = run_cli(capsys, *command, "--help")
        assert code == 0 and "Usage: clipsort " + " ".join(command) in out
        assert "[default: None]" not in out, f"{command}: a default shown as None"
        assert f"clipsort {' '.join(command)}" in cli_doc, f"docs/cli.md does not document {command}"


def test_help_and_version_do_not_import_torch():
    script = (
        "import sys\n"
        "from clipsort.cli import main\n"
        "for args in (['--help'], ['tag', '--help'], ['sort', '--help'], ['--version'], ['paths']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and re.fullmatch(r"clipsort \d+\.\d+\.\d+\n", out)


def test_no_arguments_shows_help(capsys):
    code, out, err = run_cli(capsys)
    assert code in (0, 2) and "Usage: clipsort" in out + err


def test_labels_check(capsys, tmp_path: Path):
    good = tmp_path / "labels.txt"
    good.write_text("animals/dog\nbeach: a sandy beach | the sea\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "labels", "check", str(good))
    assert code == 0
    assert "animals/dog" in out and "a photo of a dog." in out and "a sandy beach" in out
    assert "2 labels OK" in err
    bad = tmp_path / "bad.txt"
    bad.write_text("dog\ndog\n", encoding="utf-8")
    code, out, err = run_cli(capsys, "labels", "check", str(bad))
    assert code == 2 and err.strip() == f"error: {bad}:2: duplicate label 'dog' (first on line 1)"
    assert "Traceback" not in err


def test_tag_json_lines_on_stdout_summary_on_stderr(capsys, tmp_path: Path, labels_file: Path):
    photos = make_colour_photos(tmp_path / "p", ["red", "blue"], 4, **SMALL)
    code, out, err = run_cli(capsys, "tag", str(tmp_path / "p"), "--labels", str(labels_file), *MODEL, "--json")
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert {Path(r["path"]) for r in records} == set(photos)
    for record in records:
        assert set(record["scores"]) == {"red", "green", "blue"}
        assert record["labels"] == [photos[Path(record["path"])]] and record["action"] == "tagged"
        assert record["sidecar"].endswith(".xmp")
    # The device line names the device and precision the run uses, whichever machine runs the test.
    assert "model local-dir:" in err and re.search(
        r" on (cpu|cuda|mps) \((fp32|bf16|fp16|int8)(, \d+ threads?)?\)", err
    )
    assert "tagged 4 | 4 photos in" in err and "images/s" in err


def test_quiet_prints_nothing_on_success(capsys, tmp_path: Path, labels_file: Path):
    make_colour_photos(tmp_path / "p", ["green"], 1, **SMALL)
    code, out, err = run_cli(capsys, "tag", str(tmp_path / "p"), "-l", str(labels_file), *MODEL, "--quiet")
    assert (code, out, err) == (0, "", "")


def test_sort_dry_run_prints_the_plan(capsys, tmp_path: Path, labels_file: Path):
    photos = make_colour_photos(tmp_path / "in", ["red", "green"], 2, **SMALL)
    code, out, err = run_cli(
        capsys, "sort", str(tmp_path / "in"), "-l", str(labels_file), *MODEL, "-d", str(tmp_path / "out"), "--dry-run"
    )
    assert code == 0
    lines = sorted(out.splitlines())
    expected = sorted(f"would move: {p} -> {tmp_path / 'out' / c / p.name}" for p, c in photos.items())
    assert lines == expected
    assert "dry run: nothing was changed" in err and "would move 2" in err
    assert not (tmp_path / "out").exists()


def test_bad_files_are_named_and_exit_code_is_3(capsys, tmp_path: Path, labels_file: Path):
    make_colour_photos(tmp_path, ["red"], 2, **SMALL)
    (tmp_path / "empty.jpg").write_bytes(b"")
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(labels_file), *MODEL)
    assert code == 3
    assert f"error: {tmp_path / 'empty.jpg'}: empty file (0 bytes)" in err
    assert "tagged 2, failed 1" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["tag", "{tmp}/missing", "-l", "{labels}"], 2, "no such file or folder"),
        (["tag", "{tmp}", "-l", "{tmp}/nolabels.txt"], 2, "label file not found"),
        (["tag", "{tmp}", "-l", "{labels}", "--threshold", "2"], 2, "Invalid value"),
        (["tag", "{tmp}", "-l", "{labels}", "--model", "local-dir:{tmp}/nomodel"], 1, "does not exist"),
        (["tag", "{tmp}", "-l", "{labels}", "--model", "ViT-B-32"], 1, "is not cached and cannot be downloaded"),
        (["sort", "{tmp}", "-l", "{labels}", *MODEL, "--unsorted-name", "red"], 2, "also a label"),
        (["tag", "{tmp}", "-l", "{labels}", "--bogus"], 2, "No such option"),
    ],
)
def test_errors_are_one_line_with_the_documented_exit_code(
    capsys, tmp_path: Path, labels_file: Path, args, code, words
):
    args = [a.format(tmp=tmp_path, labels=labels_file) for a in args]
    got, out, err = run_cli(capsys, *args)
    assert got == code, err
    assert words in err and "Traceback" not in err
    assert out == ""


def test_missing_model_message_is_one_line(capsys, tmp_path: Path, labels_file: Path):
    code, _, err = run_cli(capsys, "tag", str(tmp_path), "-l", str(labels_file))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: model ViT-B-32 (laion2b_s34b_b79k)")


def test_environment_chooses_the_model(capsys, tmp_path: Path, labels_file: Path, monkeypatch):
    make_colour_photos(tmp_path / "p", ["blue"], 1, **SMALL)
    monkeypatch.setenv("CLIPSORT_MODEL", f"local-dir:{COLOUR_MODEL}")
    code, out, _ = run_cli(capsys, "tag", str(tmp_path / "p"), "-l", str(labels_file), "--json")
    assert code == 0 and json.loads(out)["labels"] == ["blue"]


def test_paths_and_models(capsys, isolated_env: Path):
    code, out, _ = run_cli(capsys, "paths")
    assert code == 0 and str(isolated_env / "cache") in out and str(isolated_env / "config" / "config.toml") in out
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and re.search(r"^ViT-B-32\s+.*laion2b_s34b_b79k \(default\)", out, re.M)
    assert out.count("(default)") == 1
    code, out, err = run_cli(capsys, "models", "--cached")
    assert code == 0 and "ViT-B-32 " not in out
    assert f"no model is cached in {isolated_env / 'cache'} yet" in err  # an empty list says so


def test_config_file_sets_defaults_and_flags_win(capsys, tmp_path: Path, labels_file: Path, isolated_env: Path):
    config = isolated_env / "config"
    config.mkdir()
    (config / "config.toml").write_text(f'model = "local-dir:{COLOUR_MODEL}"\nbatch_size = 2\n', encoding="utf-8")
    make_colour_photos(tmp_path / "p", ["red"], 1, **SMALL)
    code, out, _ = run_cli(capsys, "tag", str(tmp_path / "p"), "-l", str(labels_file), "--json")
    assert code == 0 and json.loads(out)["labels"] == ["red"]
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "p"), "-l", str(labels_file), "--model", "local-dir:/nowhere")
    assert code == 1 and "/nowhere" in err
    (config / "config.toml").write_text("colour = 1\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "tag", str(tmp_path / "p"), "-l", str(labels_file))
    assert code == 2 and "unknown setting 'colour'" in err


def test_threads_from_config_env_and_flag(capsys, tmp_path: Path, labels_file: Path, isolated_env: Path, monkeypatch):
    import torch

    config = isolated_env / "config"
    config.mkdir()
    (config / "config.toml").write_text("threads = 1\n", encoding="utf-8")
    make_colour_photos(tmp_path / "p", ["red"], 1, **SMALL)
    command = ["tag", str(tmp_path / "p"), "-l", str(labels_file), *MODEL, "--no-cache", "--dry-run"]
    before = torch.get_num_threads()
    try:
        code, _, err = run_cli(capsys, *command)
        assert code == 0 and "1 thread)" in err
        monkeypatch.setenv("CLIPSORT_THREADS", "2")
        code, _, err = run_cli(capsys, *command)
        assert code == 0 and "2 threads)" in err
        code, _, err = run_cli(capsys, *command, "--threads", "1")
        assert code == 0 and "1 thread)" in err
        monkeypatch.setenv("CLIPSORT_THREADS", "many")
        code, _, err = run_cli(capsys, *command)
        assert code == 2 and "CLIPSORT_THREADS='many'" in err and "Traceback" not in err
    finally:
        torch.set_num_threads(before)


def test_file_names_that_are_not_utf8(tmp_path: Path, labels_file: Path):
    from PIL import Image

    folder = tmp_path / "p"
    folder.mkdir()
    name = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes, as old cameras and SMB shares write them
    Image.new("RGB", (64, 64), "red").save(folder / name)
    for extra in (["--json"], ["--dry-run"], ["--sidecar", "json"]):
        result = subprocess.run(
            [sys.executable, "-m", "clipsort", "tag", str(folder), "-l", str(labels_file), *MODEL, *extra],
            capture_output=True,
        )
        assert result.returncode == 0, result.stderr
        assert b"Traceback" not in result.stderr
    assert json.loads((folder / (name + ".clipsort.json")).read_text(encoding="ascii"))["labels"] == ["red"]


def test_the_progress_bar_says_when_the_model_is_loading():
    """The model loads while the bar is shown (rich shows one live display): the bar says so."""
    import io

    from rich.console import Console

    from clipsort.console import Ui

    ui = Ui()
    screen = io.StringIO()
    ui.err = Console(file=screen, force_terminal=True, width=120)
    ui.started(3)
    try:
        with ui.status("loading model ViT-B-32 (laion2b_s34b_b79k)..."):
            ui._progress.refresh()
            assert "photos (loading model ViT-B-32 (laion2b_s34b_b79k)...)" in screen.getvalue()
        assert [task.description for task in ui._progress.tasks] == ["photos"]
    finally:
        ui.stop()


def test_excluded_files_are_not_walked_counted_or_an_error_in_a_cron_run(tmp_path, labels_file, capsys):
    """A file that can never be read makes every run exit 3 until it is excluded (issue 28)."""
    make_colour_photos(tmp_path / "inbox", ["red", "blue"], 4, **SMALL)
    (tmp_path / "inbox" / "stuck").mkdir()
    (tmp_path / "inbox" / "stuck" / "broken.jpg").write_bytes(b"\xff\xd8 cut short")
    (tmp_path / "inbox" / "part.tmp.jpg").write_bytes(b"")
    args = ["tag", str(tmp_path / "inbox"), "-l", str(labels_file), *MODEL, "--json"]
    code, out, err = run_cli(capsys, *args)
    assert code == 3 and "broken.jpg" in err and "part.tmp.jpg" in err
    code, out, err = run_cli(capsys, *args, "--exclude", "stuck/", "-x", "*.tmp.jpg")
    assert code == 0 and "broken.jpg" not in err + out and "tmp.jpg" not in err + out, err
    assert "4 photos" in err and len([line for line in out.splitlines() if '"path"' in line]) == 4

    # the same through a .clipsortignore in the folder, for every later run; sort leaves them where they are
    (tmp_path / "inbox" / ".clipsortignore").write_text("stuck/\n*.tmp.jpg\n", encoding="utf-8")
    sort = ["sort", str(tmp_path / "inbox"), "-l", str(labels_file), *MODEL, "-d", str(tmp_path / "sorted")]
    code, out, err = run_cli(capsys, *sort)
    assert code == 0, err
    assert (tmp_path / "inbox" / "stuck" / "broken.jpg").exists() and (tmp_path / "inbox" / "part.tmp.jpg").exists()
    moved = [p for p in (tmp_path / "sorted").rglob("*") if p.is_file() and p.suffix != ".xmp"]
    assert len(moved) == 4 and not (tmp_path / "sorted" / "stuck").exists()

    code, _, err = run_cli(capsys, *args, "--exclude", "!")
    assert code == 2 and "not a gitignore pattern" in err


def test_help_fits_a_screen_names_no_types_and_help_all_explains_every_option():
    """Issue 28: help a newcomer reads. Each command's --help-all explains every option, with no
    type's name (<float range>, <str>, [x>=1]) and defaults said one way; --help explains the
    essential options and names the rest in panels; the overview shows each command's first line
    whole; tag --help fits 45 lines of an 80-column terminal."""
    env = dict(os.environ, COLUMNS="80", TERM="dumb")
    env.pop("NO_COLOR", None)

    def shown(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "clipsort", *args], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    overview = shown("--help")
    listed = overview[overview.index("Commands:") :].splitlines()[1:]
    assert listed and not [line for line in listed if line.rstrip().endswith("...")], listed
    import typer

    group = typer.main.get_command(app)
    for command in commands():
        full = shown(*command, "--help-all")
        short = shown(*command, "--help")
        type_tag = r"<(?:float|int|integer|str|text|path|file|choice|bool|boolean)\b[^>]*>|\[x[<>]=|\[[0-9.]+<=x"
        assert not re.search(type_tag, full + short), (command, full)
        rest = re.sub(r"\[default:\s[^\]]*\]", "", full)  # defaults said one way: [default: ...]
        assert "[default: None]" not in full and not re.search(r"\[default|\(default|default:", rest), command
        target = group
        for part in command:
            target = target.commands[part]  # type: ignore[attr-defined]
        for param in target.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            assert (param.help or "").strip(), f"{command}: {param.opts} has no help"
            longest = max(param.opts, key=len)
            assert re.search(rf"{re.escape(longest)}\b", full), (command, longest)
            assert longest in short, (command, longest)  # named in --help too, if not explained
            text = "".join(param.help.split()[:4])  # its help shown (wrapped anyhow: spaces aside)
            assert text in "".join(full.split()), (command, longest, text)
        if "--precision" in full:  # the commands that run a model: their shared options in panels
            for section in ("Model and device", "Output") + (("Engine and cluster",) if "--engine" in full else ()):
                assert section + ":" in short, (command, section)
    assert len(shown("tag", "--help").splitlines()) <= 45
    assert "--engine" not in shown("show", "--help-all") and "--gpu-decode" not in shown("show", "--help-all")
    assert "One JSON object per photo" not in shown("eval", "--help-all")


def test_the_readme_installs_the_tool_alone_and_the_test_tools_apart():
    """Issue 28: a user is told `pip install .` first; the test tools are their own command further
    down (the block .ci/run reads), and the user's extras hold nothing only tests need."""
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    quick = readme[readme.index("## Quick start") : readme.index("## Development")]
    first = re.search(r"```sh\n(.*?)\n```", quick, re.S).group(1).strip()
    assert first == "pip install ." and "[test]" not in quick.split("### A smaller install")[0]
    ci = readme[readme.index("<!-- ci:install -->") :]
    assert re.search(r"```sh\n(.*?)\n```", ci, re.S).group(1).strip() == 'pip install -e ".[test]"'
    assert readme.index("<!-- ci:install -->") > readme.index("## Development")
    import tomllib

    project = tomllib.loads((DOCS.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = " ".join(project["dependencies"]).lower()
    for tool in ("pytest", "hypothesis", "ruff", "mypy", "moto", "playwright", "ray", "imagehash"):
        assert tool not in runtime, tool
