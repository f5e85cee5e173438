"""The Ray engine (``--engine ray``): the local engine's labels and sidecars, no photo lost or embedded
twice when a worker dies, photos in an S3-compatible store read and tagged through s3:// URLs.

One local Ray for the whole session (``ray.init(num_cpus=2)``); every test skips without the
``ray`` extra.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos, run_cli

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

MODEL = ["--model", str(COLOUR_MODEL)]


@pytest.fixture(scope="session")
def local_ray(shared_runtime_dir: Path):
    """A local Ray of two CPUs, started once; its workers find the session's runtime artifacts."""
    os.environ["CLIPSORT_RUNTIME_DIR"] = str(shared_runtime_dir)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def _sidecar_keywords(folder: Path) -> dict[str, dict[str, list[str]]]:
    """Every XMP sidecar under ``folder``, as clipsort's own reader parses its keyword fields."""
    from clipsort.writes.sidecar import read_keywords

    return {str(s.relative_to(folder)): read_keywords(s) for s in sorted(folder.rglob("*.xmp"))}


def test_ray_engine_gives_the_local_engines_labels_and_sidecars(tmp_path: Path, capsys, labels_file, local_ray):
    photos = make_colour_photos(tmp_path / "local", ["red", "green", "blue"], 12, min_px=100, max_px=700)
    (tmp_path / "local" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a whole jpeg")
    import shutil

    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    results = {}
    for engine in ("local", "ray"):
        code, out, err = run_cli(
            capsys,
            "tag",
            str(tmp_path / engine),
            "-l",
            str(labels_file),
            *MODEL,
            "--engine",
            engine,
            "--json",
            "--cache",
            str(tmp_path / f"{engine}.sqlite3"),
        )
        assert code == 3, err  # the broken photo fails, on either engine
        assert "broken.jpg: " in err
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        results[engine] = {Path(r["path"]).relative_to(tmp_path / engine): r["labels"] for r in lines}
    assert results["ray"] == results["local"] and len(results["ray"]) == len(photos)
    assert _sidecar_keywords(tmp_path / "ray") == _sidecar_keywords(tmp_path / "local")
    right = sum(results["ray"][path.relative_to(tmp_path / "local")] == [colour] for path, colour in photos.items())
    assert right >= len(photos) - 1
    # The vectors are in the cache as the local engine keeps them: a local run embeds nothing.
    code, _, err = run_cli(capsys, "index", str(tmp_path / "ray"), *MODEL, "--cache", str(tmp_path / "ray.sqlite3"))
    assert code == 3 and "embedded 0, from cache 12" in err, err


def test_a_clip_on_ray_is_judged_by_its_middle_frame_and_left_for_the_local_engine_to_cache(
    tmp_path: Path, capsys, labels_file, local_ray
):
    """Ray's decode stage gives one picture a file: a clip's middle frame. Its labels are those of
    the frame, said in a note, and its vector is not cached (the local engine's is its frames' mean,
    with the frames kept for search): a local run afterwards embeds the clip, not the photos."""
    pytest.importorskip("av", reason="PyAV reads videos")
    from clips import shape_clip

    make_colour_photos(tmp_path / "lib", ["green"], 2, min_px=100, max_px=400)
    shape_clip(tmp_path / "lib" / "red.mp4", "red", seed=3)
    cache = ["--cache", str(tmp_path / "cache.sqlite3")]
    code, out, err = run_cli(capsys, "tag", str(tmp_path / "lib"), "-l", str(labels_file), *MODEL,
                             "--engine", "ray", "--json", *cache)  # fmt: skip
    assert code == 0, err
    labels = {Path(r["path"]).name: r["labels"] for r in map(json.loads, out.splitlines()) if r.get("path")}
    assert labels["red.mp4"] == ["red"] and "1 video clip(s) judged by their middle frame on Ray" in err
    code, _, err = run_cli(capsys, "index", str(tmp_path / "lib"), *MODEL, *cache)
    assert code == 0 and "embedded 1, from cache 2" in err, err


def _worker_pids() -> set[int]:
    """The processes of this test's embedding actors (Ray names each after its class:
    ray::...EmbedActor...): only descendants of this process, the one that started the local Ray;
    another run's workers on the same machine are never touched."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if (
                b"EmbedActor" in command
                and command.startswith(b"ray::")
                and _descends_from(int(proc.name), os.getpid())
            ):
                pids.add(int(proc.name))
    return pids


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent
    return False


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(tmp_path: Path, capsys, local_ray):
    from clipsort.model.embed import Embedder
    from clipsort.model.model_spec import parse_spec
    from clipsort.run.events import RunOptions
    from clipsort.run.pipeline import run_index
    from clipsort.store.cache import EmbeddingCache

    make_colour_photos(tmp_path / "p", ["red", "blue"], 40, min_px=100, max_px=500)
    spec = parse_spec(str(COLOUR_MODEL))
    killed: list[int] = []

    class KillOnce:
        """Events: kill the embedding actor's process once the first photos are back."""

        def __init__(self) -> None:
            self.seen = 0

        def discovering(self, count: int) -> None: ...
        def started(self, total: int) -> None: ...
        def photo(self, result) -> None: ...
        def failed(self, failure) -> None: ...
        def warned(self, message: str) -> None: ...

        def advanced(self, count: int) -> None:
            self.seen += count
            if self.seen >= 8 and not killed:
                for pid in _worker_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    run = RunOptions(batch_size=4, engine="ray")
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        try:
            first = run_index([tmp_path / "p"], Embedder(spec, "cpu", cache), run, KillOnce())
        except Exception as exc:  # noqa: BLE001 - the run may stop; what matters is the next one
            first = exc
        assert killed, "no embedding worker was found to kill"
        second = run_index([tmp_path / "p"], Embedder(spec, "cpu", cache), run)
        assert not second.failures
        assert second.embedded + second.cached == 40
        model_id = Embedder(spec, "cpu", cache).cache_model_id()
        assert cache.image_count(model_id) == 40  # each photo once
        if not isinstance(first, Exception):  # Ray restarted the worker and finished the run
            assert first.embedded == 40 and second.cached == 40


# ----------------------------------------------------------------------------- S3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_server(monkeypatch):
    """moto's S3 server on a local port, and the environment that points boto and s3fs at it."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    import fsspec

    fsspec.config.set_conf_env(fsspec.config.conf)  # the FSSPEC_* variables set just now
    yield endpoint
    fsspec.config.conf.pop("s3", None)
    server.stop()


def test_photos_in_s3_are_indexed_and_tagged_through_urls(tmp_path: Path, capsys, labels_file, local_ray, s3_server):
    import s3fs

    from clipsort.photos.remote import RemotePath
    from clipsort.writes.sidecar import read_keywords

    photos = make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 9, min_px=100, max_px=500)
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir("photos")
    for path in photos:
        fs.put_file(str(path), f"photos/library/{path.relative_to(tmp_path / 'p').as_posix()}")
    cache = ["--cache", str(tmp_path / "c.sqlite3")]
    code, _, err = run_cli(capsys, "index", "s3://photos/library", *MODEL, "--engine", "ray", *cache)
    assert code == 0, err
    code, out, err = run_cli(
        capsys, "tag", "s3://photos/library", "-l", str(labels_file), *MODEL, "--engine", "ray", "--json", *cache
    )
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(lines) == 9 and all(r["path"].startswith("s3://photos/library/") for r in lines)
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in lines}
    right = sum(by_name[p.name]["labels"] == [c] for p, c in photos.items())
    assert right >= 8
    fs.invalidate_cache()
    for record in lines:  # a sidecar beside each photo in the bucket, read back from the bucket
        sidecar = record["sidecar"]
        assert sidecar.startswith("s3://photos/library/") and sidecar.endswith(".xmp")
        keywords = read_keywords(RemotePath(sidecar))  # read through fsspec, from the bucket
        assert keywords["clipsort"]["subject"] == record["labels"]
        assert keywords["clipsort"]["hierarchicalSubject"] == [f"clipsort|{label}" for label in record["labels"]]
    assert "embedded 0, from cache 9" in err, err  # the index before embedded them all


def test_engine_ray_without_ray_is_a_clear_error(tmp_path: Path, capsys, monkeypatch, labels_file):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    make_colour_photos(tmp_path / "p", ["red"], 1, min_px=64, max_px=100)
    code, _, err = run_cli(capsys, "index", str(tmp_path / "p"), *MODEL, "--engine", "ray")
    assert code == 2 and "pip install 'clipsort[ray]'" in err and "Traceback" not in err


def test_the_local_engine_never_imports_ray(tmp_path: Path):
    import subprocess
    import sys

    make_colour_photos(tmp_path / "p", ["red"], 2, min_px=64, max_px=100)
    script = (
        "import sys\nfrom clipsort.cli import main\ntry:\n"
        f"    main(['index', {str(tmp_path / 'p')!r}, '--model', {str(COLOUR_MODEL)!r}, '-q'])\n"
        "except SystemExit as e:\n    assert not e.code\nprint('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
