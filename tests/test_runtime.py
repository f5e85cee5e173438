"""The fast runtime: towers exported once from open_clip, run by ONNX Runtime without torch.

open_clip on torch in fp32 is the reference: every other runtime and precision must keep its
top label on at least 99% of the photos (docs/performance.md, "Decisions").
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_MODEL, make_colour_photos
from shapes import COLOURS as SHAPE_COLOURS
from shapes import SHAPES, make_picture

from clipsort import settings
from clipsort.errors import ModelError, UsageError
from clipsort.labels import score
from clipsort.model import artifact
from clipsort.model.devices import resolve_precision
from clipsort.model.loading import load_model
from clipsort.model.model_spec import parse_spec
from clipsort.model.prepare import export

SHAPES_MODEL = COLOUR_MODEL.parent / "tiny-shapes"
COLOURS = ("red", "green", "blue", "yellow", "purple")


def top_labels(model, pictures, prompts) -> np.ndarray:  # noqa: ANN001
    vectors = model.encode_images(pictures)
    return (score.normalise(vectors) @ score.normalise(model.encode_texts(prompts)).T).argmax(axis=1)


def agreement(reference, other, pictures, prompts) -> float:  # noqa: ANN001
    return float((top_labels(reference, pictures, prompts) == top_labels(other, pictures, prompts)).mean())


ROUTES = [
    ("fp32", "from the weights file"),
    ("int8", "from the weights file"),
    ("fp32", "through open_clip"),
    ("int8", "through open_clip"),
    ("bf16", "through open_clip"),  # its TorchScript tower is traced through open_clip
]


@pytest.fixture
def route(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the fast runtime is prepared: its towers written from the model's weights file (a
    standard CLIP in safetensors, as the tiny models are), or exported through open_clip (every
    other model), here made to happen by refusing the first way."""
    if request.param == "through open_clip":
        from clipsort.model.prepare import direct

        monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
        monkeypatch.setattr(direct, "preparer", lambda *args: "refused by the test")
    return str(request.param)


@pytest.mark.parametrize(("precision", "route"), ROUTES, indirect=["route"])
def test_the_fast_runtime_keeps_open_clips_top_label_on_colours(
    tmp_path: Path, reference_colour_model, precision, route
):
    from clipsort.photos.decode import load_image

    fast = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", precision)
    assert fast.artifact.manifest["written"].startswith(route)
    runtime = "torch (TorchScript)" if precision == "bf16" else "onnxruntime"
    assert fast.precision == precision and fast.describe().endswith(f"with {runtime}")
    photos = make_colour_photos(tmp_path, list(COLOURS), 40, min_px=64, max_px=400)
    pictures = [load_image(p, fast.min_side) for p in photos]
    prompts = [f"a photo of a {c}." for c in COLOURS]
    assert agreement(reference_colour_model, fast, pictures, prompts) >= (1.0 if precision == "fp32" else 0.99)
    assert fast.artifact.has(f"image-{precision}")  # the fast runtime's own tower, not a fallback
    cosines = (fast.encode_images(pictures) * reference_colour_model.encode_images(pictures)).sum(axis=1)
    assert cosines.min() >= (0.9999 if precision == "fp32" else 0.99)
    # and they are the right colours, not merely the same mistakes
    expected = [COLOURS.index(photos[p]) for p in photos]
    assert (top_labels(fast, pictures, prompts) == expected).mean() >= 0.95


@pytest.mark.parametrize(("precision", "route"), ROUTES, indirect=["route"])
def test_the_fast_runtime_keeps_open_clips_top_label_on_shapes(precision, route):
    from clipsort.model import torch_model

    spec = parse_spec(str(SHAPES_MODEL))
    reference = torch_model.load(spec, "cpu", "fp32")
    fast = load_model(spec, "cpu", precision)
    assert fast.artifact.manifest["written"].startswith(route)
    rng = random.Random(5)
    cases = [(c, s) for c in SHAPE_COLOURS for s in SHAPES]
    pictures = [make_picture(c, (rng.randint(64, 300), rng.randint(64, 300)), rng, shape=s) for c, s in cases * 6]
    prompts = [f"a photo of a {c} {s}." for c, s in cases]
    # int8: 191 of these 192 pictures keep their top label, with ONNX Runtime's quantizer as with
    # clipsort's; one more borderline picture was seen to flip in one full run: two may.
    assert agreement(reference, fast, pictures, prompts) >= (1.0 if precision == "fp32" else 0.985)


def test_texts_cut_to_their_length_give_open_clips_vectors(reference_colour_model, colour_model):
    """Prompts of any length, alone or batched with longer ones, get the vectors of the full context."""
    texts = ["red", "a photo of a red.", "a blurry low resolution photo of a large purple thing " * 2, "", "x" * 500]
    texts += ["wow!! a red!", "!"]  # token 0 is "!": not padding
    theirs = reference_colour_model.encode_texts(texts)
    together = colour_model.encode_texts(texts)
    alone = np.concatenate([colour_model.encode_texts([t]) for t in texts])
    assert colour_model.artifact.text_prefix is not None
    assert (together * theirs).sum(axis=1).min() >= 0.9999
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_prompts_that_begin_alike_share_their_beginning_and_keep_open_clips_vectors(
    reference_colour_model, colour_model
):
    """A label file's prompts (every template, labels of one and two words, some beginning alike)
    get open_clip's vectors when their shared beginnings are computed once, as when each prompt is
    computed whole; and sharing really happens (fewer positions are computed)."""
    from clipsort.labels.label_set import DEFAULT_TEMPLATES
    from clipsort.model.texts import end_positions, shared_prefixes

    labels = ["red", "green", "blue", "red circle", "red square", "dark blue", "yellow", "a b c d e f g h"]
    texts = [t.format(label) for label in labels for t in DEFAULT_TEMPLATES]
    theirs = reference_colour_model.encode_texts(texts)
    ours = colour_model.encode_texts(texts)
    assert (ours * theirs).sum(axis=1).min() >= 0.9999
    tokens = colour_model._tokenizer(texts)
    lengths = end_positions(tokens, colour_model._tokenizer.end)
    shared = shared_prefixes(tokens, lengths)
    distinct = {tokens[i, : shared[i]].tobytes() for i in range(len(texts)) if shared[i]}
    computed = (lengths - shared).sum() + sum(len(d) // tokens.itemsize for d in distinct)
    assert computed < 0.6 * lengths.sum()
    whole = colour_model._text(tokens, share=False)
    np.testing.assert_allclose(ours, whole / np.linalg.norm(whole, axis=1, keepdims=True), atol=1e-5)


def test_the_tokenizer_gives_open_clips_tokens():
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    from clipsort.model.texts import SAMPLES, ClipTokenizer

    rng = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCZ éüßñ東京🐕 .,!?'-&;<>0123456789\t\n"
    texts = [*SAMPLES, "<start_of_text>inside<end_of_text>", "it's they're we'll I'd"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90))) for _ in range(400)]
    # ASCII alone takes another path (the standard library's re instead of regex)
    ascii_only = "".join(map(chr, range(128)))
    texts += ["".join(rng.choice(ascii_only) for _ in range(rng.randint(0, 60))) for _ in range(400)]
    texts += ["".join(rng.choice("ab1 .!?'stlmd") for _ in range(rng.randint(0, 30))) for _ in range(400)]
    ours = ClipTokenizer(Path(default_bpe()), context_length=20)(texts)
    np.testing.assert_array_equal(ours, SimpleTokenizer(context_length=20)(texts).numpy())


@pytest.mark.parametrize("size", [(300, 200), (200, 301), (224, 224), (1000, 97), (97, 1000)])
@pytest.mark.parametrize("mode", ["shortest", "squash"])
def test_pillow_preprocessing_is_open_clips(size, mode):
    from open_clip.transform import image_transform
    from PIL import Image

    from clipsort.model.runtime import Preprocess

    config = {"size": 224, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.3, 0.4], "resize_mode": mode}
    theirs = image_transform(224, is_train=False, mean=config["mean"], std=config["std"], resize_mode=mode)
    rng = np.random.default_rng(size[0])
    for picture in (
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB"),
        Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), "L"),
    ):
        ours = Preprocess(config)
        np.testing.assert_allclose(ours.normalise([ours(picture)])[0], theirs(picture).numpy(), atol=1e-5)


def runtime_files() -> list[Path]:
    return sorted(p for p in settings.runtime_dir().rglob("*") if p.is_file())


def test_the_artifact_is_built_once_and_rebuilt_when_damaged(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    steps: list[str] = []

    def builds() -> int:  # the first line of each build: why the user waits
        return sum(", once (kept in " in step for step in steps)

    load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", on_step=steps.append)
    assert builds() == 1 and steps[0].startswith("preparing ") and " for this CPU in int8, once" in steps[0]
    # then how far along it is, step by step: "writing the image tower", "(2 of 2)"...
    assert any("the image tower" in step for step in steps) and any(" of " in step for step in steps)
    files = runtime_files()
    # the towers an int8 run needs, and no other (fp32 and bf16 are built when first asked for)
    assert {f.name for f in files} == {"manifest.json", "image-int8.onnx", "image-int8.data", "text-int8.onnx",
                                       "text-int8.data"}  # fmt: skip
    stamps = {f: f.stat().st_mtime_ns for f in files}

    def no_rebuild(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("rebuilt although it was built")

    with monkeypatch.context() as patch:
        patch.setattr(export, "build", no_rebuild)
        model = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", on_step=steps.append)
        model.encode_texts(["a photo of a red."])
    assert {f: f.stat().st_mtime_ns for f in runtime_files()} == stamps and builds() == 1

    # a weights file cut short, or changed: found at the next start, the artifact built again
    [data] = [f for f in files if f.name == "image-int8.data"]
    data.write_bytes(data.read_bytes()[:-100])
    again = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", on_step=steps.append)
    assert builds() == 2 and data.stat().st_size > 0
    assert again.encode_images([make_picture("red", (64, 64), random.Random(1))]).shape == (1, again.artifact.dim)

    # the same size, other bytes: found when the tower is opened (a run reads only the parts it opens)
    text = again.artifact.file("text-int8").with_suffix(".data")
    damaged = bytearray(text.read_bytes())
    damaged[:64] = bytes(64)
    text.write_bytes(bytes(damaged))
    later = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8", on_step=steps.append)
    assert later.encode_texts(["a photo of a red."]).shape == (1, later.artifact.dim)
    assert builds() == 3 and text.read_bytes()[:64] != bytes(64)

    # fp32, asked for later: its own artifact, built then; the int8 one is left as it was
    int8_files = {f: f.stat().st_mtime_ns for f in runtime_files()}
    fp32 = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32", on_step=steps.append)
    assert builds() == 4 and fp32.artifact.folder != later.artifact.folder
    assert {f.name for f in fp32.artifact.folder.iterdir()} == {"manifest.json", "image-fp32.onnx", "image-fp32.data",
                                                                "text-fp32.onnx", "text-fp32.data"}  # fmt: skip
    assert {f: f.stat().st_mtime_ns for f in runtime_files() if f.parent == later.artifact.folder} == int8_files


def test_a_tower_onnx_runtime_cannot_open_is_rebuilt(tmp_path: Path, monkeypatch):
    """Damage the manifest's checks do not see (same size and samples): ONNX Runtime's refusal rebuilds it."""
    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    model = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32")
    graph = model.artifact.file("text-fp32")
    graph.write_bytes(b"\0" * graph.stat().st_size)
    manifest_file = model.artifact.folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["parts"]["text-fp32"]["files"][graph.name] = artifact.file_facts(graph)
    manifest_file.write_text(json.dumps(manifest))
    reloaded = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32")
    assert reloaded.encode_texts(["a photo of a red."]).shape == (1, reloaded.artifact.dim)
    assert graph.stat().st_size > 0 and graph.read_bytes()[:1] != b"\0"


def test_an_artifact_of_other_library_versions_is_not_used(tmp_path: Path, monkeypatch):
    from clipsort.model.loading import RUNTIME_IDENTITY
    from clipsort.model.model_files import model_identity

    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    identity = model_identity(parse_spec(str(COLOUR_MODEL)), RUNTIME_IDENTITY)
    folder = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32").artifact.folder
    assert artifact.find(identity, "fp32") is not None
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["key"] = manifest["key"].replace("onnxruntime-", "onnxruntime-0.0.0-")  # built by another version
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert artifact.find(identity, "fp32") is None and not folder.exists()


def test_a_fast_run_imports_no_torch_and_a_relabel_no_image_tower(tmp_path: Path, shared_runtime_dir: Path):
    """Index then tag with new labels, each in a process of its own: torch is never imported,
    the index opens the image tower alone, the relabel the text tower alone. A bf16 index
    imports torch for its TorchScript tower, and neither open_clip nor torchvision."""
    make_colour_photos(tmp_path / "p", ["red", "blue"], 3, min_px=64, max_px=200)
    for precision in ("int8", "bf16"):  # the artifacts exist (shared_runtime_dir)
        load_model(parse_spec(str(COLOUR_MODEL)), "cpu", precision)
    (tmp_path / "labels.txt").write_text("red\nblue\n")
    script = (
        "import sys\nfrom clipsort.cli import main\nimport clipsort.model.runtime as r\n"
        "opened = []\nold = r.open_session\n"
        "r.open_session = lambda path, threads: (opened.append(path.name), old(path, threads))[1]\n"
        "old_ts = r.torchscript_tower\n"
        "r.torchscript_tower = lambda path, threads: (opened.append(path.name), old_ts(path, threads))[1]\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('RESULT', code, 'torch' in sys.modules, 'open_clip' in sys.modules, ','.join(opened))\n"
    )
    env = {**os.environ, "CLIPSORT_RUNTIME_DIR": str(shared_runtime_dir)}
    common = ["--model", str(COLOUR_MODEL), "--cache", str(tmp_path / "c.sqlite3"), "-q"]
    results = []
    for args in (
        ["index", str(tmp_path / "p")],
        ["tag", str(tmp_path / "p"), "--labels", str(tmp_path / "labels.txt")],
        ["index", str(tmp_path / "p"), "--precision", "bf16"],
    ):
        out = subprocess.run([sys.executable, "-c", script, *args, *common], capture_output=True, text=True, env=env)
        results.append(next(line for line in out.stdout.splitlines() if line.startswith("RESULT")).split()[1:])
    assert results[0] == ["0", "False", "False", "image-int8.onnx"]
    assert results[1] == ["0", "False", "False", "text-int8.onnx"]
    # bf16: torch for the TorchScript image tower, still no open_clip (nor torchvision)
    assert results[2] == ["0", "True", "False", "image-bf16.pt"]


def test_without_onnx_runtime_auto_runs_on_torch_and_int8_says_what_to_install(monkeypatch):
    import clipsort.model.devices as devices

    monkeypatch.setattr(devices, "fast_runtime_available", lambda: False)
    assert resolve_precision("auto", "cpu") in ("bf16", "fp32")
    model = load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "fp32")
    assert not model.describe().endswith("onnxruntime")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an absent package looks like to import
    monkeypatch.setattr(devices, "fast_runtime_available", lambda: True)
    with pytest.raises(UsageError, match="pip install onnxruntime"):
        load_model(parse_spec(str(COLOUR_MODEL)), "cpu", "int8")


def test_int8_is_for_cpus():
    with pytest.raises(UsageError, match="int8 is for CPUs"):
        resolve_precision("int8", "cuda")
    # refused before anything loads, since a fully cached run never loads the model
    with pytest.raises(UsageError, match="int8 is for CPUs"):
        settings.resolve_model_choice(device="cuda", precision="int8", config={})


def test_int8_vectors_are_cached_apart_and_auto_keeps_a_float_cache(tmp_path: Path, colour_model):
    """A cache filled in fp32 must not serve an int8 run (their vectors differ), nor the other way
    round; ``auto`` on a cache that holds only float vectors goes on in fp32 instead of starting over."""
    from clipsort.model.embed import Embedder
    from clipsort.run.events import RunOptions
    from clipsort.run.pipeline import run_index
    from clipsort.store.cache import EmbeddingCache

    make_colour_photos(tmp_path / "p", ["red", "blue"], 6, min_px=64, max_px=200)
    spec = parse_spec(str(COLOUR_MODEL))
    with EmbeddingCache(tmp_path / "c.sqlite3") as cache:
        assert Embedder(spec, "cpu", cache, "auto").precision == "int8"  # an empty cache: the fast default
        for precision, embedded in (("fp32", 6), ("auto", 0), ("int8", 6), ("fp32", 0), ("int8", 0)):
            embedder = Embedder(spec, "cpu", cache, precision)
            report = run_index([tmp_path / "p"], embedder, RunOptions(batch_size=4))
            assert (report.embedded, report.cached) == (embedded, 6 - embedded), precision
            if precision == "auto":
                assert embedder.precision == "fp32"
        assert Embedder(spec, "cpu", cache, "auto").precision == "int8"  # int8 vectors exist now


def test_a_model_that_is_not_there_fails_before_any_build(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    steps: list[str] = []
    with pytest.raises(ModelError):
        load_model(parse_spec(str(tmp_path / "nothing-here")), "cpu", "int8", on_step=steps.append)
    assert steps == []


def test_open_clip_is_imported_without_transformers_when_the_model_needs_none(tmp_path: Path):
    """open_clip imports transformers whenever it is installed (7-12 s on a GPU box); a CLIP
    model whose config names no Hugging Face part must not pay for it."""
    fake = tmp_path / "site" / "transformers"
    fake.mkdir(parents=True)
    marker = tmp_path / "imported"
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('x')\n__version__ = '4.99.0'\n")
    script = (
        "import os, sys\nfrom clipsort.model import torch_model\nfrom clipsort.model.model_spec import parse_spec\n"
        f"m = torch_model.load(parse_spec({str(COLOUR_MODEL)!r}), 'cpu', 'fp32')\n"
        "print(m.encode_texts(['a photo of a red.']).shape)\n"
        f"print('AFTER-LOAD', os.path.exists({str(marker)!r}), 'transformers' in sys.modules)\n"
        "import transformers  # hidden only while open_clip was imported\n"
        f"print('AFTER-IMPORT', os.path.exists({str(marker)!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'site'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("AFTER-")]
    # open_clip loaded without running the fake package; the script's own import then finds it
    assert lines == ["AFTER-LOAD False False", "AFTER-IMPORT True"]


def test_int8_keeps_a_full_size_models_vectors_on_the_corpus_photos(reference_vit):
    """ViT-B-32 (random weights: the real model's shape and size; no weights can be downloaded
    here): int8 vectors of the corpus's camera photos, and of prompts, keep cosine >= 0.99 to
    open_clip's fp32."""
    from conftest import corpus

    from clipsort.errors import DecodeError
    from clipsort.photos.decode import load_image

    photos = sorted(p for p in corpus("jpg").rglob("*.jpg"))[:40]
    fast = load_model(reference_vit.spec, "cpu", "int8")
    pictures = []
    for photo in photos:
        try:
            pictures.append(load_image(photo, fast.min_side))
        except DecodeError:  # the corpus's broken files
            continue
    assert len(pictures) >= 30
    cosines = (fast.encode_images(pictures) * reference_vit.encode_images(pictures)).sum(axis=1)
    assert cosines.min() >= 0.99
    prompts = ["a photo of a dog.", "a photo of a cat.", "a photo of the beach.", "a blurry photo of a car."]
    assert (fast.encode_texts(prompts) * reference_vit.encode_texts(prompts)).sum(axis=1).min() >= 0.99


def test_weights_quantized_in_numpy_keep_the_graphs_numbers_and_drop_the_float_weights(tmp_path: Path):
    """The int8 weights (clipsort.model.prepare.quantize) of a MatMul by a transposed weight (as torch exports
    ``linear``), a Gemm with a bias and a Gather from a table: the same results within 8-bit error,
    and none of those float weights left in the graph."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    from clipsort.model.prepare.quantize import quantize_weights

    rng = np.random.default_rng(3)
    weights = {
        "w1t": rng.standard_normal((64, 32)).astype(np.float32),
        "w2": rng.standard_normal((16, 64)).astype(np.float32) * 0.1,
        "b2": rng.standard_normal(16).astype(np.float32),
        "table": rng.standard_normal((20_000, 4)).astype(np.float32),
    }
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["w1t"], ["w1"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", "w1"], ["h1"]),
            helper.make_node("MatMul", ["x", "w1"], ["h2"]),  # one weight read twice: quantized once
            helper.make_node("Add", ["h1", "h2"], ["h"]),
            helper.make_node("Gemm", ["h", "w2", "b2"], ["y"], transB=1),
            helper.make_node("Gather", ["table", "ids"], ["z"], axis=0),
        ],
        "tiny",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 32]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 3, 4]),
        ],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    source, target = tmp_path / "raw.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    assert quantize_weights(source, target) == 4
    feeds = {"x": rng.standard_normal((5, 32)).astype(np.float32), "ids": rng.integers(0, 20_000, (5, 3))}
    before = onnxruntime.InferenceSession(str(source)).run(None, feeds)
    after = onnxruntime.InferenceSession(str(target)).run(None, feeds)
    for exact, approximate in zip(before, after, strict=True):
        error = np.abs(exact - approximate).max() / np.abs(exact).max()
        assert 0 < error < 0.02, error  # quantized (not the same numbers), and close
    quantized = onnx.load(str(target))
    names = [init.name for init in quantized.graph.initializer]
    assert len(names) == len(set(names))  # each weight's 8-bit numbers once
    kinds = {init.name: init.data_type for init in quantized.graph.initializer}
    assert not {"w1t", "w2", "table"} & set(kinds)  # the float weights are gone, the bias stays
    assert kinds["b2"] == TensorProto.FLOAT and "Transpose" not in {node.op_type for node in quantized.graph.node}
    assert sum(kind == TensorProto.UINT8 for kind in kinds.values()) >= 3
