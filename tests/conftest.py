"""Shared fixtures: an isolated environment, the tiny trained colour model, photo makers."""

from __future__ import annotations

import json
import random
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from shapes import make_picture  # noqa: E402

#: The tiny CLIP trained on coloured shapes (tests/models/train_tiny_clip.py).
COLOUR_MODEL = TESTS / "models" / "tiny-colours"
#: Real camera files, shared beside the checkout; tests that need them skip without them.
CORPUS = TESTS.parent.parent / "shared" / "corpus" / "exif-samples"

ORIENTATION_TAG = 0x0112
#: For each EXIF orientation, the transpose that turns the upright picture into the stored one.
STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def run_cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``clipsort ARGS`` in this process: (exit code, stdout, stderr)."""
    from clipsort.cli import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def corpus(*parts: str) -> Path:
    """A path in the shared exif-samples corpus; skips the test when the corpus is absent."""
    path = CORPUS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared corpus not present: {path}")
    return path


@pytest.fixture(scope="session")
def shared_runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of fast-runtime artifacts for the whole session: each model's is built once
    (tests of building itself point CLIPSORT_RUNTIME_DIR elsewhere)."""
    return tmp_path_factory.mktemp("clipsort-runtime")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked ``gpu`` run where torch sees a CUDA device, and skip elsewhere."""
    if item.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA device")


@pytest.fixture(autouse=True)
def isolated_env(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    shared_runtime_dir: Path,
    request: pytest.FixtureRequest,
) -> Path:
    """Every test gets its own cache and config dirs and no CLIPSORT_* settings from the host.

    Commands run on the CPU (``CLIPSORT_DEVICE=cpu``) unless the test is marked ``gpu``: the same
    suite then asserts the same things on a machine with a GPU and on one without, and the GPU
    paths have tests of their own (marked ``gpu``, skipped without CUDA).
    """
    home = tmp_path_factory.mktemp("clipsort-home")
    for name in (
        "CLIPSORT_MODEL",
        "CLIPSORT_PRETRAINED",
        "CLIPSORT_DEVICE",
        "CLIPSORT_PRECISION",
        "CLIPSORT_THREADS",
        "CLIPSORT_CACHE",
        "CLIPSORT_DEBUG",
        "CLIPSORT_ASSUME_GPU",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLIPSORT_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("CLIPSORT_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("CLIPSORT_DATA_DIR", str(home / "data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no test downloads anything
    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(shared_runtime_dir))
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setenv("CLIPSORT_DEVICE", "cpu")
    return home


@pytest.fixture(scope="session")
def colour_model(shared_runtime_dir: Path):
    """The trained tiny colour CLIP, loaded once on the CPU in float32 (the fast runtime)."""
    import os

    from clipsort.model.loading import load_model
    from clipsort.model.model_spec import parse_spec

    os.environ["CLIPSORT_RUNTIME_DIR"] = str(shared_runtime_dir)  # before any test's own environment
    return load_model(parse_spec(f"local-dir:{COLOUR_MODEL}"), "cpu", "fp32")


@pytest.fixture(scope="session")
def reference_colour_model():
    """The same model on open_clip and torch in float32: the reference for every other runtime."""
    from clipsort.model import torch_model
    from clipsort.model.model_spec import parse_spec

    return torch_model.load(parse_spec(f"local-dir:{COLOUR_MODEL}"), "cpu", "fp32")


@pytest.fixture(scope="session")
def reference_vit():
    """ViT-B-32 with random weights (seed 0) on open_clip and torch, fp32: a full-size reference."""
    from clipsort.model import torch_model
    from clipsort.model.model_spec import parse_spec

    return torch_model.load(parse_spec("ViT-B-32", "none"), "cpu", "fp32")


@pytest.fixture
def colour_embedder(colour_model):
    """An Embedder around the loaded colour model, without a cache."""
    from clipsort.model.embed import Embedder

    return Embedder(colour_model.spec, "cpu", cache=None, loader=lambda spec, device, precision: colour_model)


@pytest.fixture(scope="session")
def rgb_labels():
    from clipsort.labels.label_set import parse_labels

    return parse_labels("red\ngreen\nblue\n", "rgb.txt")


@pytest.fixture
def labels_file(tmp_path: Path) -> Path:
    path = tmp_path / "labels.txt"
    path.write_text("# colours\nred\ngreen\nblue\n", encoding="utf-8")
    return path


def save_photo(image: Image.Image, path: Path, orientation: int = 1, quality: int = 90) -> Path:
    """Save an upright picture so that a viewer applying EXIF ``orientation`` shows it upright."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = image.transpose(STORE[orientation]) if orientation in STORE else image
    if path.suffix.lower() in (".jpg", ".jpeg"):
        exif = Image.Exif()
        exif[ORIENTATION_TAG] = orientation
        stored.save(path, "JPEG", quality=quality, exif=exif.tobytes())
    else:
        stored.save(path, compress_level=1)
    return path


def make_colour_photos(
    folder: Path,
    colours: Iterable[str],
    count: int,
    seed: int = 1,
    min_px: int = 300,
    max_px: int = 3000,
) -> dict[Path, str]:
    """``count`` photos cycling through ``colours``: JPEG and PNG, 300-3000 px, some stored rotated
    with an EXIF orientation, in nested folders, some with non-ASCII names. Returns path -> colour."""
    rng = random.Random(seed)
    colours = list(colours)
    names = ["photo", "Früh-stück", "日本の写真", "café au lait", "ёлка"]
    photos: dict[Path, str] = {}
    for i in range(count):
        colour = colours[i % len(colours)]
        size = (rng.randint(min_px, max_px), rng.randint(min_px, max_px))
        picture = make_picture(colour, size, rng)
        sub = folder / ["", "a", "a/b", "über"][i % 4]
        ext = ".jpg" if i % 3 else ".png"
        if i % 7 == 0:
            ext = ext.upper()
        path = sub / f"{names[i % len(names)]} {i:03d}{ext}"
        orientation = rng.choice([1, 1, 3, 6, 8, 2, 5, 7, 4]) if ext.lower() == ".jpg" else 1
        save_photo(picture, path, orientation)
        photos[path] = colour
    return photos


def write_random_model(folder: Path, **vision: int) -> Path:
    """A randomly initialised tiny CLIP in the local-dir layout (same architecture as the colour model;
    ``vision`` changes its image tower's settings, as ``image_size=224, patch_size=32``)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = json.loads((COLOUR_MODEL / "open_clip_config.json").read_text())
    config["model_cfg"]["vision_cfg"].update(vision)
    torch.manual_seed(0)
    model = open_clip.CLIP(**config["model_cfg"])
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder


def copy_model(destination: Path) -> Path:
    shutil.copytree(COLOUR_MODEL, destination)
    return destination
