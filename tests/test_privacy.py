"""Nothing leaves the machine unasked, and nothing is written outside clipsort's folders and the
library: each command runs with a fresh home under strace, which records every connection and
every datagram sent, and the files left behind are listed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COLOUR_MODEL, make_colour_photos

STRACE = shutil.which("strace")


def _foreign(trace: str) -> list[str]:
    """The lines of an strace log that reach beyond this machine, or look up a host name in the DNS
    (port 53, or systemd-resolved). Names answered by /etc/hosts and user lookups through nscd
    stay on the machine."""
    found = []
    for line in trace.splitlines():
        if "AF_UNIX" in line and "systemd/resolve" in line:  # a lookup through systemd-resolved
            found.append(line)
        elif "AF_INET" in line:
            address = re.search(r'inet_(?:addr|pton)\((?:AF_INET6, )?"([^"]+)"', line)
            port = re.search(r"sin6?_port=htons\((\d+)\)", line)
            host = address.group(1) if address else ""
            loopback = host.startswith("127.") or host in ("::1", "0.0.0.0", "::") or host.startswith("::ffff:127.")
            if not loopback or (port and port.group(1) == "53"):
                found.append(line)
    return found


@pytest.fixture
def fresh_home(tmp_path):
    """An environment with a new home, its own temp folder, and no clipsort settings."""
    home = tmp_path / "home"
    temp = tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLIPSORT_", "XDG_", "HF_", "ORT_", "RAY_")) and key not in ("HOME", "TMPDIR")
    }
    env.update(HOME=str(home), TMPDIR=str(temp), CLIPSORT_DEVICE="cpu")
    return home, temp, env


def _outside_clipsort(home: Path) -> list[str]:
    own = [home / ".cache" / "clipsort", home / ".local" / "share" / "clipsort", home / ".config" / "clipsort"]
    return sorted(
        str(p.relative_to(home))
        for p in home.rglob("*")
        if (p.is_file() or p.is_symlink()) and not any(p.is_relative_to(folder) for folder in own)
    )


def _traced(args: list[str], env: dict[str, str], trace: Path) -> subprocess.CompletedProcess:
    command = [STRACE, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(trace)]
    return subprocess.run([*command, sys.executable, "-m", "clipsort", *args], env=env, capture_output=True, text=True)


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")
def test_commands_send_nothing_and_write_only_clipsort_folders_and_the_library(tmp_path, fresh_home):
    home, temp, env = fresh_home
    library = tmp_path / "library"
    make_colour_photos(library, ["red", "green", "blue"], 6, min_px=64, max_px=160)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    model = ["--model", str(COLOUR_MODEL)]
    photo = next(p for p in sorted(library.rglob("*")) if p.suffix == ".jpg")
    runs = {
        "tag": ["tag", str(library), "-l", str(labels), *model],
        "search": ["search", "a red picture", str(library), *model],
        "dupes": ["dupes", str(library), *model],
        "show": ["show", str(photo), "-l", str(labels), *model],
        "sort": ["sort", str(library), "-l", str(labels), *model, "-d", str(tmp_path / "sorted")],
    }
    for name, args in runs.items():
        trace = tmp_path / f"{name}.trace"
        result = _traced(args, env, trace)
        assert result.returncode == 0, (name, result.stderr)
        assert _foreign(trace.read_text()) == [], name
        assert _outside_clipsort(home) == [], name
        assert list(temp.iterdir()) == [], name
    assert not (home / ".cache" / "Microsoft").exists()  # ONNX Runtime's telemetry never started


@pytest.mark.slow
@pytest.mark.skipif(STRACE is None, reason="needs strace (.ci/run installs it)")
def test_the_ray_engine_sends_nothing_beyond_the_machine_and_leaves_no_files(tmp_path, fresh_home):
    pytest.importorskip("ray")
    home, temp, env = fresh_home
    library = tmp_path / "library"
    make_colour_photos(library, ["red", "blue"], 4, min_px=64, max_px=120)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    trace = tmp_path / "ray.trace"
    result = _traced(
        ["tag", str(library), "-l", str(labels), "--model", str(COLOUR_MODEL), "--engine", "ray"], env, trace
    )
    assert result.returncode == 0, result.stderr
    assert _foreign(trace.read_text()) == []
    assert _outside_clipsort(home) == []
    assert list(temp.iterdir()) == []  # Ray's session folder went with the run


def test_telemetry_is_off_before_any_dependency_loads():
    code = (
        "import clipsort, os, sys; "
        "print(os.environ.get('ORT_DISABLE_TELEMETRY'), os.environ.get('HF_HUB_DISABLE_TELEMETRY'), "
        "'onnxruntime' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "HF_HUB_DISABLE_TELEMETRY")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1", "False"]


def test_a_cached_model_loads_with_the_hub_offline(tmp_path, monkeypatch):
    """Promise: once a model is in the cache, open_clip and huggingface_hub are not asked to check it."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code = (
        "import os, sys; from clipsort.model import torch_model; from clipsort.model.model_spec import parse_spec; "
        f"torch_model.load(parse_spec('local-dir:{COLOUR_MODEL}'), 'cpu', 'fp32'); "
        "import huggingface_hub.constants as c; print(os.environ.get('HF_HUB_OFFLINE'), c.HF_HUB_OFFLINE)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["1", "True"]
