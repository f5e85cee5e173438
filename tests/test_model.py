"""Model loading: every specifier open_clip takes, the offline cache, devices, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, copy_model, write_random_model

from clipsort import settings
from clipsort.errors import DeviceError, ModelError, ModelUnavailableError, UsageError
from clipsort.model.loading import load_model
from clipsort.model.model_files import list_models
from clipsort.model.model_spec import parse_spec


def test_parse_spec_forms(tmp_path: Path):
    assert parse_spec("ViT-B-32", "laion2b_s34b_b79k").kind == "builtin"
    assert parse_spec("ViT-B/32", "openai").name == "ViT-B-32"
    assert parse_spec("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K").name == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert parse_spec(f"local-dir:{tmp_path}") == parse_spec(str(tmp_path))
    assert parse_spec("ViT-B-32", "NONE").pretrained == "none"
    with pytest.raises(UsageError):
        parse_spec("hf-hub:no-slash")


def test_local_dir_model_loads_and_embeds(colour_model):
    assert colour_model.device == "cpu" and colour_model.precision == "fp32"
    assert colour_model.image_size == 48 and colour_model.min_side == 48
    assert 10 < colour_model.logit_scale < 101
    texts = colour_model.encode_texts(["a photo of a red.", "a photo of a blue."])
    assert texts.shape == (2, 32) and texts.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, rtol=1e-5)


def test_plain_folder_and_random_weights_folder(tmp_path: Path):
    folder = write_random_model(tmp_path / "random")
    model = load_model(parse_spec(str(folder)), "cpu")
    assert model.name == f"local-dir:{folder}"


def test_architecture_with_a_checkpoint_file(tmp_path: Path):
    import open_clip

    config = json.loads((COLOUR_MODEL / "open_clip_config.json").read_text())
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "TinyColourArch.json").write_text(json.dumps(config["model_cfg"]))
    open_clip.add_model_config(configs)
    checkpoint = tmp_path / "weights.safetensors"
    shutil.copy(COLOUR_MODEL / "open_clip_model.safetensors", checkpoint)
    model = load_model(parse_spec("TinyColourArch", str(checkpoint)), "cpu")
    reference = load_model(parse_spec(str(COLOUR_MODEL)), "cpu")
    prompts = ["a photo of a green."]
    np.testing.assert_allclose(model.encode_texts(prompts), reference.encode_texts(prompts), atol=1e-5)


def test_missing_weights_fail_with_an_offline_recipe_before_any_download(monkeypatch):
    import socket

    def no_network(*args, **kwargs):  # the check comes first: not one connection is tried offline
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(ModelUnavailableError) as info:
        load_model(parse_spec("ViT-B-32", "laion2b_s34b_b79k"), "cpu")
    message = str(info.value)
    assert "ViT-B-32 (laion2b_s34b_b79k)" in message
    assert str(settings.hf_cache_dir()) in message
    assert str(settings.models_dir() / "ViT-B-32__laion2b_s34b_b79k") in message
    assert "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message and "local-dir:" in message


def test_model_folder_placed_in_the_cache_is_found_by_name():
    copy_model(settings.models_dir() / "ViT-B-32__laion2b_s34b_b79k")
    model = load_model(parse_spec("ViT-B-32", "laion2b_s34b_b79k"), "cpu")
    assert model.image_size == 48  # the tiny model stands in for the real one
    listed = {row.architecture: row for row in list_models()}
    assert "laion2b_s34b_b79k" in listed["ViT-B-32"].cached_tags
    assert "openai" in listed["ViT-B-32"].tags and "openai" not in listed["ViT-B-32"].cached_tags


def _fake_hub_download(repo: str) -> Path:
    """Lay the model out as huggingface_hub's cache does after a download."""
    base = settings.hf_cache_dir() / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(COLOUR_MODEL, snapshot)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(snapshot.name)
    return snapshot


def test_hf_hub_model_loads_offline_from_the_download_cache():
    _fake_hub_download("someone/tiny-colours")
    model = load_model(parse_spec("hf-hub:someone/tiny-colours"), "cpu")
    assert model.image_size == 48 and model.name == "hf-hub:someone/tiny-colours"


def test_hf_hub_model_not_cached_is_unavailable():
    with pytest.raises(ModelUnavailableError, match="someone/missing"):
        load_model(parse_spec("hf-hub:someone/missing"), "cpu")


@pytest.mark.parametrize(
    ("model", "pretrained", "words"),
    [
        ("NoSuchArch", "x", "unknown model 'NoSuchArch'"),
        ("ViT-B-32", "no_such_tag", "unknown pretrained tag 'no_such_tag'"),
        ("ViT-B-32", "/nowhere/weights.pt", "does not exist"),
        ("local-dir:/nowhere/model", None, "does not exist"),
    ],
)
def test_bad_specifiers_are_model_errors(model, pretrained, words):
    with pytest.raises(ModelError, match=words):
        load_model(parse_spec(model, pretrained), "cpu")


def test_architecture_without_pretrained_is_a_usage_error():
    with pytest.raises(UsageError, match="needs --pretrained"):
        load_model(parse_spec("RN50", None), "cpu")


def test_folder_without_config_is_explained(tmp_path: Path):
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="open_clip_config.json is missing"):
        load_model(parse_spec(f"local-dir:{tmp_path}"), "cpu")


def test_unavailable_device_is_an_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        load_model(parse_spec(str(COLOUR_MODEL)), "cuda")


@pytest.mark.gpu
def test_cuda_half_precision_agrees_with_cpu(colour_model):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    gpu = load_model(parse_spec(str(COLOUR_MODEL)), "auto")
    assert gpu.device == "cuda" and gpu.precision == "fp16"
    assert gpu.batch_size in (64, 256)  # sized for the device, not the CPU's 32
    prompts = ["a photo of a red.", "a photo of a blue."]
    cos = (gpu.encode_texts(prompts) * colour_model.encode_texts(prompts)).sum(axis=1)
    assert (cos > 0.99).all()


def test_precision_rules(monkeypatch):
    import clipsort.model.devices as devices
    from clipsort.model.devices import resolve_precision

    assert resolve_precision("auto", "cuda") == "fp16" and resolve_precision("auto", "mps") == "fp16"
    assert resolve_precision("auto", "cpu") == "int8"  # the fast runtime, installed by default
    monkeypatch.setattr(devices, "fast_runtime_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UsageError, match="fp16 is for GPUs"):
        resolve_precision("fp16", "cpu")


def test_bf16_agrees_with_fp32_on_the_top_label(tmp_path: Path, colour_model):
    from conftest import make_colour_photos

    from clipsort.labels import score
    from clipsort.photos.decode import load_image

    bf16 = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "bf16")
    assert bf16.precision == "bf16"
    photos = make_colour_photos(tmp_path, ["red", "green", "blue", "yellow", "purple"], 25, min_px=64, max_px=300)
    prompts = [f"a photo of a {c}." for c in ("red", "green", "blue", "yellow", "purple")]
    pictures = [load_image(p, 48) for p in photos]
    tops = []
    for model in (colour_model, bf16):
        cosines = score.normalise(model.encode_images(pictures)) @ score.normalise(model.encode_texts(prompts)).T
        tops.append(cosines.argmax(axis=1))  # the best label: the highest cosine
    assert (tops[0] == tops[1]).all()


def test_uint8_preprocessing_matches_open_clips_transform(tmp_path: Path, reference_colour_model):
    """Pixels travel as uint8 and are normalised on the device: the vectors must not change."""
    colour_model = reference_colour_model
    import torch
    from conftest import make_colour_photos

    from clipsort.photos.decode import load_image

    photos = make_colour_photos(tmp_path, ["red", "blue"], 4, min_px=64, max_px=400)
    pictures = [load_image(p, 48) for p in photos]
    prepared = [colour_model.prepare(p) for p in pictures]
    assert all(t.dtype == torch.uint8 for t in prepared)
    ours = colour_model.encode_prepared(prepared)
    theirs = colour_model.encode_prepared([colour_model._preprocess(p) for p in pictures])
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_threads_are_applied_and_default_to_the_usable_cpus():
    import torch

    from clipsort.model import torch_model

    before = torch.get_num_threads()
    try:
        model = torch_model.load(parse_spec(str(COLOUR_MODEL)), "cpu", "bf16", threads=1)
        assert torch.get_num_threads() == 1 and model.describe() == "cpu (bf16, 1 thread)"
        # the next load without a choice goes back to the default, not to the last value set
        again = torch_model.load(parse_spec(str(COLOUR_MODEL)), "cpu", "bf16")
        assert again.threads == min(before, settings.usable_cpus())
        fast = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", threads=1)
        assert fast.describe() == "cpu (int8, 1 thread) with onnxruntime"
        assert load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8").threads == settings.model_threads()
        with pytest.raises(UsageError, match="at least 1"):
            load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32", threads=0)
    finally:
        torch.set_num_threads(before)
    assert model.batch_size == 32


def test_default_threads_respect_cpu_affinity():
    """A process pinned to one CPU (taskset, a container's cpuset) must not run two torch threads."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this system")
    script = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from clipsort.model.torch_model import default_threads; print(default_threads())"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


def test_openmp_threads_wait_passively_unless_the_user_chose():
    """Spinning OpenMP threads take the cores the decode threads need (docs/performance.md)."""
    import os
    import subprocess
    import sys

    script = "import clipsort.model.devices, torch, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "ACTIVE"


def test_image_size_hint_reads_configs_without_importing_torch(tmp_path: Path):
    import subprocess
    import sys

    script = (
        "import sys\nfrom clipsort.model.model_files import image_size_hint\n"
        "from clipsort.model.model_spec import parse_spec\n"
        f"print(image_size_hint(parse_spec('ViT-B-32', 'none')), image_size_hint(parse_spec('ViT-L-14-336', 'openai')),"
        f" image_size_hint(parse_spec({str(COLOUR_MODEL)!r})), image_size_hint(parse_spec('hf-hub:nobody/nothing')),"
        f" image_size_hint(parse_spec({str(tmp_path)!r})), 'torch' in sys.modules, 'open_clip' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["224", "336", "48", "None", "None", "False", "False"]


def test_loading_weights_skips_random_init_without_changing_the_model(monkeypatch, colour_model):
    import contextlib

    import torch

    from clipsort.model import torch_model

    before = {name: getattr(torch.nn.init, name) for name in dir(torch.nn.init)}
    fast = torch_model.load(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32")
    assert {name: getattr(torch.nn.init, name) for name in dir(torch.nn.init)} == before  # restored
    monkeypatch.setattr(torch_model, "_no_random_init", contextlib.nullcontext)
    slow = torch_model.load(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32")
    fast_state, slow_state = fast._model.state_dict(), slow._model.state_dict()
    assert fast_state.keys() == slow_state.keys()
    assert all(torch.equal(fast_state[key], slow_state[key]) for key in fast_state)
    prompts = ["a photo of a red.", "a photo of a blue."]
    np.testing.assert_array_equal(fast.encode_texts(prompts), slow.encode_texts(prompts))


# ----------------------------------------------------------------------------- CUDA known before torch


def _as_if_cuda_were_here(monkeypatch) -> None:  # noqa: ANN001
    """An NVIDIA device node and a CUDA build of torch, as a GPU machine has them (torch itself is
    not told: on this machine it finds no usable CUDA, as on a GPU box with a broken driver)."""
    import clipsort.model.devices as devices

    monkeypatch.setattr(devices, "_nvidia_device_nodes", lambda: True)
    monkeypatch.setattr(devices, "torch_built_for_cuda", lambda: True)
    monkeypatch.setattr(devices.sys, "platform", "linux")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_cuda_is_taken_for_granted_only_where_it_is_all_but_certain(monkeypatch):
    import torch

    import clipsort.model.devices as devices

    assert devices.torch_built_for_cuda() == (torch.version.cuda is not None)  # read without importing torch
    assert devices.likely_device("cpu") == "cpu"
    monkeypatch.setattr(devices, "_nvidia_device_nodes", lambda: True)
    monkeypatch.setattr(devices, "torch_built_for_cuda", lambda: False)
    assert devices.likely_device("auto") is None  # a CPU build of torch: torch decides, as before
    _as_if_cuda_were_here(monkeypatch)
    assert devices.likely_device("auto") == "cuda" and devices.likely_device("cuda:1") == "cuda:1"
    assert devices.likely_device("mps") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # GPUs hidden on purpose: torch decides
    assert devices.likely_device("auto") is None
    monkeypatch.setattr(devices, "_nvidia_device_nodes", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    if not any(Path("/dev").glob("kfd")) and not Path("/dev/dxg").exists():
        assert devices.likely_device("auto") == "cpu"


def test_a_run_where_cuda_seems_present_starts_without_torch(tmp_path: Path):
    """The device is settled without ``import torch`` (seconds on a GPU box), so discovery and
    decoding start at once; torch comes with the model."""
    import os
    import subprocess
    import sys

    script = (
        "import sys\nimport clipsort.model.devices as d\n"
        "d._nvidia_device_nodes = lambda: True\nd.torch_built_for_cuda = lambda: True\n"
        "from clipsort.model.embed import Embedder\nfrom clipsort.model.model_spec import parse_spec\n"
        f"e = Embedder(parse_spec({str(COLOUR_MODEL)!r}), 'auto', None)\n"
        "print(e.device, e.precision, 'torch' in sys.modules)\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    if not sys.platform.startswith("linux"):
        pytest.skip("the guess is made on Linux only")
    assert out.stdout.split() == ["cuda", "fp16", "False"]


def test_when_torch_cannot_use_the_gpu_it_seemed_to_have_auto_runs_on_the_cpu_and_says_so(tmp_path: Path, monkeypatch):
    import torch
    from conftest import make_colour_photos

    from clipsort.model.embed import Embedder
    from clipsort.run.pipeline import run_index
    from clipsort.store.cache import EmbeddingCache

    if torch.cuda.is_available():
        pytest.skip("torch can use this machine's GPU: the guess is right here")
    _as_if_cuda_were_here(monkeypatch)
    make_colour_photos(tmp_path / "p", ["red", "blue"], 10, min_px=40, max_px=200)
    spec = parse_spec(str(COLOUR_MODEL))
    with EmbeddingCache(tmp_path / "cache.sqlite3") as cache:
        embedder = Embedder(spec, "auto", cache)
        assert (embedder.device, embedder.precision) == ("cuda", "fp16")  # taken before torch was asked
        report = run_index([tmp_path / "p"], embedder)
        assert report.embedded == 10 and not report.failures
        assert (embedder.device, embedder.precision) == ("cpu", "fp32")
        where = f"the model runs on {embedder.device} in {embedder.precision}"
        assert len(report.warnings) == 1 and "torch cannot use it" in report.warnings[0]
        assert where in report.warnings[0]  # and nothing said of a GPU decoder the run no longer has
        # The vectors went where float vectors go: a plain CPU run finds every one of them.
        again = run_index([tmp_path / "p"], Embedder(spec, "cpu", cache))
        assert again.cached == 10 and again.embedded == 0

        make_colour_photos(tmp_path / "new", ["red"], 3, min_px=40, max_px=200)
        explicit = Embedder(spec, "cuda", cache)  # --device cuda: refused, as without the guess
        with pytest.raises(DeviceError, match="CUDA is not available"):
            run_index([tmp_path / "new"], explicit)


def test_the_catalog_read_without_open_clip_is_open_clips_own():
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from clipsort.model.model_spec import catalog\n"
        "known = catalog()\n"
        "print(known is not None, 'torch' in sys.modules, 'open_clip' in sys.modules)\n"
        "import json\n"
        "print(json.dumps([list(known.architectures), {a: list(known.tags(a)) for a in known.architectures}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "True False False"  # read without importing torch or open_clip
    import json

    architectures, tags = json.loads(out[1])
    asked = (  # open_clip's own answers, in a process of their own (tests here register tiny models)
        "import json, open_clip\n"
        "names = open_clip.list_models()\n"
        "print(json.dumps([names, {a: open_clip.list_pretrained_tags_by_model(a) for a in names}]))\n"
    )
    own = subprocess.run([sys.executable, "-c", asked], capture_output=True, text=True, check=True).stdout
    assert [architectures, tags] == json.loads(own.splitlines()[-1])
    # clipsort models lists them all, the default marked, without importing torch or open_clip
    script = "import sys\nfrom clipsort.cli import main\ntry:\n    main(['models'])\nexcept SystemExit:\n    pass\n"
    script += "print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
    listed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    lines = listed.splitlines()
    assert lines[-1] == "False False" and len(lines) - 1 >= len(architectures)
    assert "laion2b_s34b_b79k (default)" in next(line for line in lines if line.startswith("ViT-B-32 "))


@pytest.mark.parametrize(
    ("model", "pretrained", "words"),
    [
        ("ViT-B-33", None, "unknown model 'ViT-B-33'; nearest: ViT-B-32"),
        ("{tmp}/no/such/model", None, "no model folder '{tmp}/no/such/model' and no model of that name"),
        ("local-dir:{tmp}/nomodel", None, "model folder {tmp}/nomodel does not exist"),
        (
            "ViT-B-32",
            "laion2b_s34b_b78k",
            "unknown pretrained tag 'laion2b_s34b_b78k' for ViT-B-32; nearest: laion2b_s34b_b79k",
        ),
    ],
)
def test_a_model_that_does_not_exist_is_refused_at_once_and_nothing_is_cached_for_it(
    tmp_path, model, pretrained, words
):
    """Refused before torch or open_clip is imported (what made it take 5 s), with the name as given
    and the nearest known names; the cache holds no model row for it afterwards."""
    import subprocess
    import sys

    from PIL import Image

    from clipsort.store.cache import EmbeddingCache

    (tmp_path / "p").mkdir()
    Image.new("RGB", (64, 64), "red").save(tmp_path / "p" / "a.jpg")
    (tmp_path / "labels.txt").write_text("red\nblue\n", encoding="utf-8")
    cache = tmp_path / "c.sqlite3"
    with EmbeddingCache(cache):
        pass
    args = ["tag", str(tmp_path / "p"), "-l", str(tmp_path / "labels.txt"), "--cache", str(cache)]
    args += ["--model", model.format(tmp=tmp_path)] + (["--pretrained", pretrained] if pretrained else [])
    script = (
        "import sys\n"
        "from clipsort.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print('torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["exit", "1", "False", "False"], (done.stdout, done.stderr)
    assert words.format(tmp=tmp_path) in done.stderr and done.stderr.count("\n") == 1, done.stderr
    with EmbeddingCache(cache) as db:
        assert db.models() == []
