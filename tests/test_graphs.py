"""A model's towers written from its weights file, without torch (clipsort.model.prepare.graphs):
held to open_clip itself for every option they accept, and models they do not accept exported
through open_clip as before."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import COLOUR_MODEL, make_colour_photos
from shapes import make_picture

from clipsort.errors import ModelError
from clipsort.model.loading import load_model
from clipsort.model.model_spec import parse_spec
from clipsort.model.prepare import direct, reference, weights

SHAPES_MODEL = COLOUR_MODEL.parent / "tiny-shapes"

#: Small CLIPs with every option the graphs accept, each unlike open_clip's defaults: QuickGELU,
#: layer scale in both towers, MLP ratios other than 4, heads of other widths, a size given as a
#: pair, squashed and bilinear preprocessing with its own mean.
OPTIONS: dict[str, dict[str, Any]] = {
    "quickgelu, layer scale, bf16 weights": {
        "model_cfg": {
            "embed_dim": 24,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 48, "layers": 3, "width": 64, "head_width": 16, "patch_size": 16,
                           "mlp_ratio": 2.0, "ls_init_value": 0.5, "patch_dropout": 0.0},
            "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 3,
                         "mlp_ratio": 3.0, "ls_init_value": 0.3},
        },
        "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "interpolation": "bilinear",
                           "resize_mode": "squash"},
        "dtype": "bfloat16",
    },
    "gelu, a size as a pair, fp32 weights": {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {"image_size": [32, 32], "layers": 2, "width": 48, "head_width": 24, "patch_size": 8},
            "text_cfg": {"context_length": 12, "width": 40, "heads": 5, "layers": 2},
        },
        "preprocess_cfg": {},
        "dtype": "float32",
    },
}  # fmt: skip


def write_model(folder: Path, config: dict[str, Any], seed: int = 3) -> Path:
    """A model folder as open_clip writes one: random weights (layer scales too) in safetensors."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    name = f"clipsort-test-{abs(hash(json.dumps(config['model_cfg'], sort_keys=True)))}"
    open_clip.factory._MODEL_CONFIGS[name] = json.loads(json.dumps(config["model_cfg"]))
    model = open_clip.create_model(name, pretrained=None)
    state = model.state_dict()
    for key, tensor in state.items():
        if key.endswith(".gamma"):  # layer scale: not the constant it starts as
            state[key] = torch.rand_like(tensor) + 0.5
    dtype = getattr(torch, config["dtype"])
    folder.mkdir(parents=True)
    save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(folder / "open_clip_model.safetensors"))
    body = {"model_cfg": config["model_cfg"], "preprocess_cfg": config["preprocess_cfg"]}
    (folder / "open_clip_config.json").write_text(json.dumps(body))
    return folder


def vectors_of(model: Any, pictures: list[Any], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return model.encode_images(pictures), model.encode_texts(texts)


TEXTS = [
    "a photo of a red circle.",
    "a photo of a red square.",
    "a photo of a dog",
    "red",
    "",
    "a blurry photo of a very large and rather dark purple triangle on a white table " * 3,
]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("options", list(OPTIONS))
def test_towers_written_from_the_weights_give_open_clips_vectors(tmp_path: Path, monkeypatch, options, precision):
    """fp32: open_clip's vectors (cosine >= 0.9999) for pictures of odd sizes and prompts of every
    length, alike and not (the text tower reuses shared beginnings); int8 within 0.99. Built
    from the weights file: open_clip's export is never called."""
    from clipsort.model import torch_model
    from clipsort.model.prepare import export

    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setattr(export, "through_open_clip", lambda *a: pytest.fail("exported through open_clip"))
    folder = write_model(tmp_path / "model", OPTIONS[options])
    spec = parse_spec(f"local-dir:{folder}")
    rng = random.Random(2)
    pictures = [make_picture(c, (rng.randint(20, 300), rng.randint(20, 300)), rng) for c in ("red", "blue") * 3]
    theirs = vectors_of(torch_model.load(spec, "cpu", "fp32"), pictures, TEXTS)
    fast = load_model(spec, "cpu", precision)
    assert fast.artifact.manifest["written"].startswith("from the weights file")
    floor = 0.9999 if precision == "fp32" else 0.99
    for ours, reference_vectors in zip(vectors_of(fast, pictures, TEXTS), theirs, strict=True):
        assert (ours * reference_vectors).sum(axis=1).min() >= floor


@pytest.mark.parametrize("options", list(OPTIONS))
def test_the_numpy_arithmetic_the_build_checks_against_is_open_clips(tmp_path: Path, options):
    """clipsort.model.prepare.reference, what a build checks its towers against, is open_clip's
    arithmetic: a mistake in the graphs cannot pass the build's check by being made twice."""
    import open_clip
    import torch

    folder = write_model(tmp_path / "model", OPTIONS[options])
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    tensors = weights.Tensors(folder / "open_clip_model.safetensors")
    shape = weights.describe(OPTIONS[options]["model_cfg"], tensors)
    assert isinstance(shape, weights.Shape)
    pixels = np.random.default_rng(1).normal(size=(3, 3, shape.image_size, shape.image_size)).astype(np.float32)
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS)
    with torch.no_grad():
        their_images = model.encode_image(torch.from_numpy(pixels)).numpy()
        their_texts = model.encode_text(tokens).numpy()
    np.testing.assert_allclose(reference.image_vectors(tensors, shape, pixels), their_images, atol=2e-4)
    np.testing.assert_allclose(reference.text_vectors(tensors, shape, tokens.numpy()), their_texts, atol=2e-4)


def test_a_trained_model_keeps_its_decisions_in_int8(tmp_path: Path):
    """The tiny shapes model, written from its float16 weights in int8: open_clip's top label."""
    from clipsort.labels import score
    from clipsort.model import torch_model

    spec = parse_spec(str(SHAPES_MODEL))
    fast = load_model(spec, "cpu", "int8")
    assert fast.artifact.manifest["written"].startswith("from the weights file")
    reference_model = torch_model.load(spec, "cpu", "fp32")
    rng = random.Random(4)
    cases = [(c, s) for c in ("red", "green", "blue") for s in ("circle", "square", "triangle")]
    pictures = [make_picture(c, (rng.randint(64, 200), rng.randint(64, 200)), rng, shape=s) for c, s in cases * 3]
    prompts = [f"a photo of a {c} {s}." for c, s in cases]

    def top(model: Any) -> np.ndarray:
        images, texts = vectors_of(model, pictures, prompts)
        return (score.normalise(images) @ score.normalise(texts).T).argmax(axis=1)

    assert (top(fast) == top(reference_model)).mean() >= 0.96


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c["model_cfg"]["vision_cfg"].update(final_ln_after_pool=True), "final_ln_after_pool"),
        (lambda c: c["model_cfg"]["text_cfg"].update(pool_type="last"), "pool_type"),
        (lambda c: c["model_cfg"].update(init_logit_bias=-10.0), "init_logit_bias"),
    ],
)
def test_other_models_are_exported_through_open_clip(tmp_path: Path, monkeypatch, change, reason):
    """An option the graphs do not write is named, and the model is exported through open_clip
    with its checks, as before: open_clip's vectors still."""
    from clipsort.model import torch_model

    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    config = json.loads(json.dumps(OPTIONS["gelu, a size as a pair, fp32 weights"]))
    change(config)
    folder = write_model(tmp_path / "model", config)
    spec = parse_spec(f"local-dir:{folder}")
    why = direct.preparer(spec, "identity", "int8")
    assert isinstance(why, str) and reason in why
    fast = load_model(spec, "cpu", "fp32")
    assert "written" not in fast.artifact.manifest or "open_clip" in fast.artifact.manifest["written"]
    texts = ["a photo of a dog", "red"]
    ours = fast.encode_texts(texts)
    assert (ours * torch_model.load(spec, "cpu", "fp32").encode_texts(texts)).sum(axis=1).min() >= 0.9999


def test_pickled_weights_and_random_weights_are_exported_through_open_clip(tmp_path: Path):
    folder = tmp_path / "pickled"
    shutil.copytree(COLOUR_MODEL, folder)
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(str(folder / "open_clip_model.safetensors")), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_model.safetensors").unlink()
    assert "pickled .bin" in direct.preparer(parse_spec(f"local-dir:{folder}"), "identity", "int8")
    assert "random" in direct.preparer(parse_spec("ViT-B-32", "none"), "identity", "int8")
    assert "bf16" in direct.preparer(parse_spec(str(COLOUR_MODEL)), "identity", "bf16")


def test_a_weights_file_that_lies_is_refused_where_it_enters(tmp_path: Path):
    """A safetensors header whose numbers lie outside the file, or do not fill their shape, or are
    not floats: refused before anything is mapped or written (then open_clip's loader says why)."""
    source = (COLOUR_MODEL / "open_clip_model.safetensors").read_bytes()
    length = int.from_bytes(source[:8], "little")
    header = json.loads(source[8 : 8 + length])
    cases = {
        "cut short": source[: len(source) // 2],
        "outside": _with_header(source, header, "visual.proj", data_offsets=[0, 10**9]),
        "wrong shape": _with_header(source, header, "visual.proj", shape=[999, 999]),
        "integers": _with_header(source, header, "visual.proj", dtype="I64"),
        "no header": b"\x05\x00",
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        with pytest.raises(ValueError):
            weights.Tensors(path)
    folder = tmp_path / "model"
    shutil.copytree(COLOUR_MODEL, folder)
    (folder / "open_clip_model.safetensors").write_bytes(cases["outside"])
    assert "could not be read" in direct.preparer(parse_spec(str(folder)), "identity", "int8")
    with pytest.raises(ModelError):
        load_model(parse_spec(str(folder)), "cpu", "int8")


def _with_header(source: bytes, header: dict[str, Any], name: str, **entry: Any) -> bytes:
    length = int.from_bytes(source[:8], "little")
    changed = {**header, name: {**header[name], **entry}}
    text = json.dumps(changed).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + source[8 + length :]


def test_a_first_run_prepares_the_model_without_torch(tmp_path: Path):
    """A model never run before, tagged from scratch in a process of its own: the fast runtime is
    prepared and the photos tagged right, and neither torch nor open_clip is imported."""
    photos = make_colour_photos(tmp_path / "p", ["red", "blue"], 4, min_px=64, max_px=200)
    (tmp_path / "labels.txt").write_text("red\nblue\n")
    script = (
        "import sys\nfrom clipsort.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "print('RESULT', code, 'torch' in sys.modules, 'open_clip' in sys.modules)\n"
    )
    env = {**os.environ, "CLIPSORT_RUNTIME_DIR": str(tmp_path / "runtime")}
    args = ["tag", str(tmp_path / "p"), "--labels", str(tmp_path / "labels.txt"), "--model", str(COLOUR_MODEL)]
    args += ["--cache", str(tmp_path / "c.sqlite3"), "--dry-run", "--json"]
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env)
    assert next(line for line in out.stdout.splitlines() if line.startswith("RESULT")).split()[1:] == [
        "0",
        "False",
        "False",
    ], out.stderr
    assert "preparing" in out.stderr  # the steps after it are shown on a terminal's status line
    tagged = {Path(r["path"]): r["labels"] for r in map(json.loads, out.stdout.splitlines()[:-1])}
    assert tagged == {path: [colour] for path, colour in photos.items()}


def test_a_pretrained_tag_in_the_download_cache_is_written_from_its_weights(tmp_path: Path, monkeypatch, reference_vit):
    """``--model ViT-B-32 --pretrained laion2b_s34b_b79k`` with the weights in huggingface_hub's
    cache as a safetensors file (how open_clip downloads them): written without torch, with the
    preprocessing open_clip gives that tag, and open_clip's vectors."""
    from safetensors.torch import save_file

    from clipsort import settings
    from clipsort.model import torch_model

    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    base = settings.hf_cache_dir() / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    snapshot = base / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(snapshot.name)
    state = {k: v.contiguous() for k, v in reference_vit.torch_module.state_dict().items()}
    save_file(state, str(snapshot / "open_clip_model.safetensors"))
    spec = parse_spec("ViT-B-32", "laion2b_s34b_b79k")
    fast = load_model(spec, "cpu", "fp32")
    assert fast.artifact.manifest["written"].startswith("from the weights file")
    theirs = torch_model.load(spec, "cpu", "fp32")
    expected = json.loads(json.dumps(dict(theirs.torch_module.visual.preprocess_cfg)))
    assert fast.artifact.manifest["preprocess"] == expected
    rng = random.Random(6)
    pictures = [make_picture(c, (rng.randint(100, 400), rng.randint(100, 400)), rng) for c in ("red", "blue")]
    for ours, reference_vectors in zip(
        vectors_of(fast, pictures, TEXTS), vectors_of(theirs, pictures, TEXTS), strict=True
    ):
        assert (ours * reference_vectors).sum(axis=1).min() >= 0.9999


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_both_ways_of_preparing_a_model_give_the_same_vectors(tmp_path: Path, monkeypatch, precision):
    """Written from the weights file or exported through open_clip, a model's towers give the same
    vectors in int8 as in fp32 (the same weights quantized alike): which way a model is prepared
    never changes what a library's cache holds."""
    spec = parse_spec(str(COLOUR_MODEL))
    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "written"))
    written = load_model(spec, "cpu", precision)
    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "exported"))
    monkeypatch.setattr(direct, "preparer", lambda *args: "refused by the test")
    exported = load_model(spec, "cpu", precision)
    assert written.artifact.manifest["written"].startswith("from the weights file")
    assert exported.artifact.manifest["written"].startswith("through open_clip (refused by the test")
    rng = random.Random(8)
    pictures = [make_picture(c, (rng.randint(40, 300), rng.randint(40, 300)), rng) for c in ("red", "green") * 4]
    for ours, theirs in zip(vectors_of(written, pictures, TEXTS), vectors_of(exported, pictures, TEXTS), strict=True):
        np.testing.assert_allclose(ours, theirs, atol=2e-5)


def test_weights_that_are_not_numbers_are_named_and_not_kept(tmp_path: Path, monkeypatch):
    """A weights file whose image projection holds NaN: in int8 the weight is named as it is
    quantized; in fp32 the build's check fails (NaN is below every threshold) and the image tower
    is not kept, with the reason. Nothing but clipsort's own message is printed."""
    import torch
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    folder = tmp_path / "model"
    shutil.copytree(COLOUR_MODEL, folder)
    state = load_file(str(folder / "open_clip_model.safetensors"))
    state["visual.proj"] = torch.full_like(state["visual.proj"], float("nan"))
    save_file(state, str(folder / "open_clip_model.safetensors"))
    from clipsort.model.loading import RUNTIME_IDENTITY
    from clipsort.model.model_files import model_identity
    from clipsort.model.prepare import export

    spec = parse_spec(str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's warnings would reach the person's terminal
        with pytest.raises(ModelError, match="weight visual.proj holds values that are not numbers"):
            load_model(spec, "cpu", "int8")
        assert not list((tmp_path / "runtime").glob("*/manifest.json"))
        identity = model_identity(spec, RUNTIME_IDENTITY) or ""
        fp32 = direct.preparer(spec, identity, "fp32")
        assert not isinstance(fp32, str)
        built = export.build(fp32, spec.display, identity, "fp32")
    assert not built.has("image-fp32") and "vectors differ" in built.why_not("image-fp32")
    assert built.has("text-fp32")  # the text tower holds no NaN


class _Shapes:
    """Names and shapes of a weights file, as :func:`weights.describe` reads them."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        self.shapes = shapes

    def __iter__(self):  # noqa: ANN204
        return iter(self.shapes)


def _meta_shapes(name: str) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """open_clip's model ``name`` built without memory (torch's meta device), and its weights' shapes."""
    import open_clip
    import torch

    with torch.device("meta"):
        model = open_clip.create_model(name, pretrained=None, device="meta")
    return model, {key: tuple(value.shape) for key, value in model.state_dict().items()}


#: open_clip's standard CLIP architectures: written from their weights files.
STANDARD = ("ViT-B-32", "ViT-B-32-quickgelu", "ViT-B-32-256", "ViT-B-16", "ViT-B-16-plus-240", "ViT-L-14",
            "ViT-L-14-336", "ViT-L-14-quickgelu", "ViT-H-14", "ViT-H-14-378-quickgelu", "ViT-g-14", "ViT-bigG-14",
            "ViT-S-32", "ViT-M-16-alt")  # fmt: skip
#: Others, exported through open_clip (the reason names what the graphs do not write).
OTHERS = {"ViT-B-16-SigLIP": "init_logit_bias", "EVA02-B-16": "custom_text", "RN50": "sizes",
          "convnext_base": "timm_model_name", "coca_ViT-B-32": "multimodal_cfg", "ViT-L-14-CLIPA": "no_ln_pre",
          "ViT-H-14-worldwide": "hf_tokenizer_name", "MobileCLIP-S1": "custom_text"}  # fmt: skip


@pytest.mark.filterwarnings("ignore")
def test_open_clips_standard_architectures_are_recognised_with_their_sizes_and_others_named():
    """Every standard architecture of open_clip's catalogue is recognised, with the sizes its model
    has (defaults left out of its config included); SigLIP, EVA, ResNets, ConvNeXt, CoCa, CLIPA and
    multilingual models are named, with the option that makes them other."""
    import open_clip

    for name in STANDARD:
        model, shapes = _meta_shapes(name)
        shape = weights.describe(open_clip.get_model_config(name), _Shapes(shapes))
        assert isinstance(shape, weights.Shape), (name, shape)
        visual, blocks = model.visual, model.visual.transformer.resblocks
        assert (shape.image_size, shape.patch) == (visual.image_size[0], visual.patch_size[0]), name
        assert (shape.vision_width, shape.vision_layers) == (visual.transformer.width, len(blocks)), name
        assert shape.vision_heads == blocks[0].attn.num_heads, name
        text = model.transformer.resblocks
        assert (shape.text_width, shape.text_layers, shape.text_heads) == (
            model.transformer.width, len(text), text[0].attn.num_heads), name  # fmt: skip
        assert (shape.context_length, shape.embed_dim) == (model.context_length, visual.output_dim), name
        assert shape.quick_gelu == (type(blocks[0].mlp.gelu).__name__ == "QuickGELU"), name
    for name, reason in OTHERS.items():
        _, shapes = _meta_shapes(name)
        said = weights.describe(open_clip.get_model_config(name), _Shapes(shapes))
        assert isinstance(said, str) and reason in said, (name, said)


@pytest.mark.filterwarnings("ignore")
def test_weights_that_do_not_fit_the_config_are_named():
    """A tensor missing, one more than the model has (a SigLIP bias), a shape that differs: named;
    a logit scale stored as one number in a list (as older checkpoints keep it) is the same model."""
    import open_clip

    config = open_clip.get_model_config("ViT-B-32")
    _, shapes = _meta_shapes("ViT-B-32")
    assert isinstance(weights.describe(config, _Shapes({**shapes, "logit_scale": (1,)})), weights.Shape)
    assert "logit_scale" in str(weights.describe(config, _Shapes({**shapes, "logit_scale": (2,)})))
    missing = {k: v for k, v in shapes.items() if k != "visual.ln_post.bias"}
    assert "missing ['visual.ln_post.bias']" in str(weights.describe(config, _Shapes(missing)))
    extra = {**shapes, "logit_bias": (1,)}
    assert "unexpected ['logit_bias']" in str(weights.describe(config, _Shapes(extra)))
    wrong = {**shapes, "visual.proj": (768, 256)}
    assert "visual.proj of shape (768, 256), not (768, 512)" in str(weights.describe(config, _Shapes(wrong)))
    for name in ("ln_final.bias", "visual.proj", "text_projection"):  # one number where a vector or matrix is
        said = str(weights.describe(config, _Shapes({**shapes, name: (1,)})))
        assert f"weight {name} of shape (1,)" in said
    text_gone = {k: v for k, v in shapes.items() if k.startswith("visual.")}  # three names said, not all
    said = str(weights.describe(config, _Shapes(text_gone)))
    assert "missing ['ln_final.bias', 'ln_final.weight', 'logit_scale'], unexpected [])" in said
    more = {**shapes, **{f"extra.{i}": (1,) for i in range(5)}}
    assert "missing [], unexpected ['extra.0', 'extra.1', 'extra.2'])" in str(weights.describe(config, _Shapes(more)))


@pytest.mark.parametrize(
    "names",
    [
        ["open_clip_pytorch_model.bin", "open_clip_model.safetensors"],
        ["model.safetensors", "open_clip_model.safetensors"],
        ["pytorch_model.bin", "zzz.safetensors"],
        ["a.bin", "b.pth"],
        ["weights.pth"],
        ["a.bin", "b.safetensors"],
        ["z.safetensors", "a.pth"],
    ],
)
def test_the_weights_file_of_a_folder_is_the_one_open_clip_loads(tmp_path: Path, names: list[str]):
    """Of several weights files in a model folder, the one open_clip's loader chooses (safetensors
    first, then its preferred names): the one written from must be the one open_clip would load."""
    from open_clip.factory import _find_checkpoint_in_dir

    from clipsort.model.prepare.weights import _checkpoint_in

    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert _checkpoint_in(tmp_path) == Path(_find_checkpoint_in_dir(tmp_path))


def test_a_model_downloaded_in_its_first_run_is_still_written_from_its_weights(tmp_path: Path, monkeypatch):
    """A Hub model not yet on this machine: open_clip downloads it (here: the download put in
    huggingface_hub's cache as it would be), and its towers are then written from the safetensors
    file it brought, not exported through torch."""
    from test_model import _fake_hub_download

    from clipsort.model import model_files, torch_model

    monkeypatch.setenv("CLIPSORT_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setattr(model_files, "_reachable", lambda url, timeout=4.0: True)
    real_load = torch_model.load
    downloads = []

    def downloading(spec, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if not downloads:
            downloads.append(_fake_hub_download("someone/new-colours"))
        return real_load(spec, *args, **kwargs)

    monkeypatch.setattr(torch_model, "load", downloading)
    fast = load_model(parse_spec("hf-hub:someone/new-colours"), "cpu", "int8")
    assert downloads and fast.artifact.manifest["written"].startswith("from the weights file")
    assert fast.encode_texts(["a photo of a red."]).shape == (1, fast.artifact.dim)


@pytest.mark.filterwarnings("ignore")
def test_a_config_that_leaves_sizes_out_gets_open_clips_defaults_and_odd_sizes_are_named():
    """A model folder's config may leave every size out (open_clip then uses its defaults: ViT-B-16's
    tower and CLIP's text tower): the sizes read are the model's. Sizes that are not plain numbers,
    not square, not a multiple of the patch, and options with other values are named."""
    import open_clip
    import torch

    def described(config: dict[str, Any]) -> Any:
        name = f"clipsort-test-{abs(hash(json.dumps(config, sort_keys=True)))}"
        open_clip.factory._MODEL_CONFIGS[name] = json.loads(json.dumps(config))
        with torch.device("meta"):
            model = open_clip.create_model(name, pretrained=None, device="meta")
        shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        return model, weights.describe(config, _Shapes(shapes))

    model, shape = described({"embed_dim": 512, "vision_cfg": {}, "text_cfg": {}})
    assert shape == weights.Shape(
        embed_dim=512, image_size=224, patch=16, vision_width=768, vision_heads=12, vision_layers=12,
        text_width=512, text_heads=8, text_layers=12, context_length=77, quick_gelu=False,
        vision_scale=False, text_scale=False,
    )  # fmt: skip
    assert model.visual.image_size[0] == 224 and model.context_length == 77
    base = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
            "head_width": 16}, "text_cfg": {"context_length": 8, "width": 16, "heads": 2, "layers": 1}}  # fmt: skip
    _, fine = described(base)
    assert isinstance(fine, weights.Shape)
    shapes = _Shapes({})  # describe reads the config first: no weights needed to refuse these
    for change, said in (
        ({"image_size": "32"}, "plain numbers"),
        ({"patch_size": "8"}, "plain numbers"),
        ({"image_size": [32, 48]}, "not square"),
        ({"image_size": []}, "not square"),
        ({"image_size": 36}, "not a multiple of the patch size"),
        ({"pool_type": "avg"}, "pool_type='avg'"),
    ):
        config = json.loads(json.dumps(base))
        config["vision_cfg"].update(change)
        result = weights.describe(config, shapes)
        assert isinstance(result, str) and said in result, (change, result)
    logit = {**{k: v for k, v in _meta_shapes("ViT-B-32")[1].items()}, "logit_scale": (0,)}
    assert "logit_scale" in str(weights.describe(open_clip.get_model_config("ViT-B-32"), _Shapes(logit)))
