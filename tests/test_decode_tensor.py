"""The GPU's JPEG path (clipsort.photos.decode_tensor, clipsort.run.decode_pool): the same pictures, vectors and
hashes as the CPU decoder, files it cannot take handed back, no photo lost.

torchvision decodes on CPU tensors as it does with nvJPEG on a GPU, so everything but the device
runs here; the tests marked ``gpu`` repeat the comparisons on CUDA.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, CORPUS, make_colour_photos, run_cli, save_photo
from PIL import Image

from clipsort.commands import dupes
from clipsort.errors import DecodeError
from clipsort.model.embed import Embedder
from clipsort.photos.decode import _TRANSPOSE, load_image, reduction
from clipsort.photos.decode_tensor import orient, read_jpeg
from clipsort.photos.discover import discover
from clipsort.photos.phash import distance, perceptual_hash
from clipsort.run.decode_pool import DecodePool
from clipsort.run.engine_local import default_workers
from clipsort.run.events import RunOptions
from clipsort.run.pipeline import run_index
from clipsort.store.cache import EmbeddingCache

torch = pytest.importorskip("torch")


def _torch_model(device: str = "cpu"):
    from clipsort.model import torch_model
    from clipsort.model.model_spec import parse_spec

    return torch_model.load(parse_spec(f"local-dir:{COLOUR_MODEL}"), device, "fp32")


@pytest.fixture(scope="module")
def torch_colour_model():
    """The tiny colour model on open_clip and torch (the runtime that decodes JPEGs itself)."""
    return _torch_model()


def _corpus_jpegs() -> list[Path]:
    folder = CORPUS / "jpg"
    if not folder.is_dir():
        pytest.skip(f"shared corpus not present: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def _compare_with_cpu(model, photos: list[Path]) -> tuple[np.ndarray, list[int], list[Path]]:
    """(cosines of the two paths' vectors, hash distances, files given back) over ``photos``."""
    decoder = model.jpeg_decoder()
    files = [read_jpeg(p) for p in photos]
    taken = [(p, f) for p, f in zip(photos, files, strict=True) if f is not None]
    results = decoder.decode([f for _, f in taken])
    given_back = [p for p, f in zip(photos, files, strict=True) if f is None]
    given_back += [p for (p, _), r in zip(taken, results, strict=True) if r is None]
    on_device, on_cpu, distances = [], [], []
    for (path, _), result in zip(taken, results, strict=True):
        if result is None:
            continue
        picture = load_image(path, min_side=model.min_side)
        on_cpu.append(model.prepare(picture))
        on_device.append(result[0])
        distances.append(distance(result[1], perceptual_hash(picture)))
    cosines = (model.encode_prepared(on_device) * model.encode_prepared(on_cpu)).sum(axis=1)
    return cosines, distances, given_back


def test_orientation_turns_pixels_as_the_cpu_decoder_does():
    stored = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(4, 5, 3) * 4  # not symmetric in any way
    for orientation in range(1, 9):
        picture = Image.fromarray(stored)
        transpose = _TRANSPOSE.get(orientation)
        expected = np.asarray(picture.transpose(transpose) if transpose is not None else picture)
        turned = orient(torch.from_numpy(stored.copy()).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
        assert np.array_equal(turned, expected), orientation


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000), (1000, 700), (449, 230), (224, 224), (100, 60)])
def test_reduction_is_what_the_cpu_decoder_reduces_by(tmp_path: Path, size: tuple[int, int]):
    path = tmp_path / "p.jpg"
    Image.new("RGB", size, (90, 120, 200)).save(path, quality=80)
    factor = reduction(*size, 224)
    decoded = load_image(path, min_side=224)
    assert decoded.size == (-(-size[0] // factor), -(-size[1] // factor))
    assert min(decoded.size) >= min(224, *size)


def test_tensor_decoder_gives_the_cpu_decoders_vectors_and_hashes_on_camera_photos(torch_colour_model):
    photos = _corpus_jpegs()
    cosines, distances, given_back = _compare_with_cpu(torch_colour_model, photos)
    assert len(cosines) >= len(photos) - 2 and len(given_back) <= 2  # every RGB or grey JPEG is taken
    assert cosines.min() >= 0.99, photos[int(np.argmin(cosines))]
    # The hash decides which copies dupes confirms: the two decoders must agree (a photo 49 px
    # wide, where a rounding moves a few coefficients across the median, differed in 8 bits).
    assert np.mean(distances) <= 1.0 and max(distances) < dupes.COPY_BITS


def test_files_the_tensor_decoder_cannot_take_are_given_back(tmp_path: Path, torch_colour_model):
    noise = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    good = save_photo(Image.fromarray(noise), tmp_path / "good.jpg")
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (300, 200), (0, 200, 200, 0)).save(cmyk)
    png = tmp_path / "png.jpg"
    Image.new("RGB", (300, 200)).save(png, "PNG")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert read_jpeg(cmyk) is None and read_jpeg(png) is None and read_jpeg(empty) is None
    assert read_jpeg(tmp_path / "missing.jpg") is None
    # A header that reads, pixels that do not: the batch is split until the one file is alone.
    broken = tmp_path / "broken.jpg"
    data = good.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])
    files = [read_jpeg(p) for p in (good, broken, good, good, good)]
    assert all(f is not None for f in files)
    results = torch_colour_model.jpeg_decoder().decode(files)
    assert [r is None for r in results] == [False, True, False, False, False]


def _cached_vectors(cache: EmbeddingCache, embedder: Embedder, root: Path) -> dict[bytes, np.ndarray]:
    rows = [row for chunk in cache.scan(embedder.cache_model_id(), [root], "path, vector") for row in chunk]
    return {path: np.frombuffer(vector, dtype=np.float16).astype(np.float32) for path, vector in rows}


def _refs(folder: Path):
    return sorted(discover([folder]), key=lambda ref: ref.path.name)


def test_pool_decodes_every_photo_once_sharing_jpegs_and_giving_back_the_rest(tmp_path: Path, torch_colour_model):
    photos = make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 12, min_px=200, max_px=900)
    Image.new("CMYK", (300, 200), (0, 200, 200, 0)).save(tmp_path / "p" / "cmyk.jpg")
    good = next(p for p in photos if p.suffix == ".jpg")
    (tmp_path / "p" / "broken.jpg").write_bytes(good.read_bytes()[:2000])
    refs = _refs(tmp_path / "p")
    embedder = Embedder(torch_colour_model.spec, "cpu", None, "fp32", loader=lambda *a: torch_colour_model)
    embedder.model()
    jpegs = [r for r in refs if r.path.suffix.lower() == ".jpg"]
    with DecodePool(embedder, 2, cpu_takes_jpegs=False) as pool:
        pool.start_device_decoder(embedder.jpeg_decoder())
        futures = {ref.path: pool.submit(ref) for ref in refs}
        done = {}
        for path, future in futures.items():
            try:
                done[path] = future.result(timeout=120)
            except DecodeError as error:
                done[path] = error
    assert isinstance(done[tmp_path / "p" / "broken.jpg"], DecodeError)  # the CPU decoder's verdict
    decoded = [r for r in done.values() if not isinstance(r, DecodeError)]
    assert len(decoded) == len(refs) - 1 and all(r.prepared is not None and r.phash is not None for r in decoded)
    # Every good RGB JPEG went to the device's decoder (the CPU threads were told to leave them);
    # the CMYK one, the broken one and the PNGs to the CPU threads (which decoded all but the broken one).
    assert pool.on_device == len(jpegs) - 2
    assert pool.on_cpu == len(refs) - 1 - pool.on_device


def test_index_with_jpegs_decoded_as_tensors_gives_the_same_vectors(tmp_path: Path, torch_colour_model):
    make_colour_photos(tmp_path / "p", ["red", "green", "blue"], 24, min_px=200, max_px=1200)
    vectors = {}
    for gpu_decode in (False, True):
        with EmbeddingCache(tmp_path / f"c{gpu_decode}.sqlite3") as cache:
            embedder = Embedder(torch_colour_model.spec, "cpu", cache, "fp32", loader=lambda *a: torch_colour_model)
            report = run_index([tmp_path / "p"], embedder, RunOptions(batch_size=8, workers=1, gpu_decode=gpu_decode))
            assert report.embedded == 24 and not report.failures and not report.warnings
            vectors[gpu_decode] = _cached_vectors(cache, embedder, tmp_path / "p")
    assert vectors[False].keys() == vectors[True].keys()
    cosines = [float(vectors[False][k] @ vectors[True][k]) for k in vectors[False]]
    assert min(cosines) >= 0.99


def test_a_decoder_that_breaks_loses_no_photo(tmp_path: Path, torch_colour_model, monkeypatch):
    make_colour_photos(tmp_path / "p", ["red", "blue"], 8, min_px=200, max_px=600)
    refs = _refs(tmp_path / "p")
    embedder = Embedder(torch_colour_model.spec, "cpu", None, "fp32", loader=lambda *a: torch_colour_model)
    embedder.model()
    decoder = embedder.jpeg_decoder()

    def broken(items):
        raise MemoryError("the device is gone")

    monkeypatch.setattr(decoder, "decode", broken)
    with DecodePool(embedder, 1, cpu_takes_jpegs=False) as pool:
        pool.start_device_decoder(decoder)
        results = [pool.submit(ref).result(timeout=120) for ref in refs]
    assert len(results) == len(refs) and all(r.prepared is not None for r in results)
    assert pool.on_device == 0 and pool.on_cpu == len(refs)
    assert pool.device_error == "MemoryError: the device is gone" and not pool.device_decoding


def test_gpu_decode_needs_cuda(capsys, tmp_path: Path, labels_file: Path):
    make_colour_photos(tmp_path / "p", ["red"], 1, min_px=64, max_px=100)
    code, _, err = run_cli(
        capsys, "tag", str(tmp_path / "p"), "-l", str(labels_file), "--model", str(COLOUR_MODEL), "--gpu-decode"
    )
    assert code == 2 and "--gpu-decode needs a CUDA device" in err and "Traceback" not in err


def test_decode_threads_are_sized_for_the_device(monkeypatch):
    from clipsort import settings

    monkeypatch.setattr(settings, "usable_cpus", lambda: 16)
    assert default_workers("cpu") == 4 and default_workers("cuda") == 14
    monkeypatch.setattr(settings, "usable_cpus", lambda: 2)
    assert default_workers("cpu") == 2 and default_workers("cuda") == 1


# ----------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
def test_cuda_jpeg_decoder_matches_the_cpu_decoder_on_camera_photos():
    model = _torch_model("cuda")
    decoder = model.jpeg_decoder()
    assert not isinstance(decoder, str) and decoder.device.startswith("cuda")
    cosines, distances, given_back = _compare_with_cpu(model, _corpus_jpegs())
    assert cosines.min() >= 0.99 and len(given_back) <= 2
    assert np.mean(distances) <= 1.0 and max(distances) < dupes.COPY_BITS


@pytest.mark.gpu
def test_cuda_index_decodes_jpegs_on_the_gpu_and_gives_the_cpu_vectors(tmp_path: Path, torch_colour_model):
    for path in _corpus_jpegs():
        shutil.copy(path, tmp_path / f"{len(list(tmp_path.iterdir())):03d}-{path.name}")
    gpu = _torch_model("cuda")
    vectors = {}
    for name, model in (("cpu", torch_colour_model), ("cuda", gpu)):
        with EmbeddingCache(tmp_path.parent / f"{tmp_path.name}-{name}.sqlite3") as cache:
            embedder = Embedder(model.spec, name, cache, "fp32", loader=lambda *a, m=model: m)
            report = run_index([tmp_path], embedder, RunOptions(workers=1))
            if name == "cuda":
                assert any("nvJPEG" in note for note in report.notes), report.notes
            vectors[name] = _cached_vectors(cache, embedder, tmp_path)
    assert vectors["cpu"].keys() == vectors["cuda"].keys()
    assert min(float(vectors["cpu"][k] @ vectors["cuda"][k]) for k in vectors["cpu"]) >= 0.99
