"""Train the tiny CLIPs that the tests use, and save them in open_clip's local-dir layout.

    python tests/models/train_tiny_clip.py                       # tests/models/tiny-colours
    python tests/models/train_tiny_clip.py --shapes --steps 12000 --groups 64 --per-colour 4000  # tiny-shapes

The model learns colour names (and, with ``--shapes``, shape names) from
synthetic pictures of coloured shapes (tests/shapes.py) with the CLIP paper's
symmetric contrastive loss (Radford et al. 2021, figure 3): cross-entropy over
image->text and text->image logits, ``logit_scale`` learned. To avoid false
negatives, the batch is made of groups in which every picture has a different
colour (and, with ``--shapes``, a different shape: groups of four, from the four
shapes of TRAINED_SHAPES), and the loss is taken within each group. Captions
are the prompt templates clipsort ensembles at inference (DEFAULT_TEMPLATES),
filled with the colour alone, with "colour shape", and with ``--shapes`` the
shape alone, so that a label file of plain colour or shape names works.

tiny-colours: about 3 minutes on a 2-core CPU. tiny-shapes (64 px, a four-layer
image tower of width 128): trained on one H100 in 7 minutes with the command
above; it runs on a CPU too, much slower. Weights are stored as float16 (under 4 MB).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shapes import COLOURS, SHAPES, make_picture  # noqa: E402

from clipsort.labels import DEFAULT_TEMPLATES  # noqa: E402

#: The shapes a ``--shapes`` model learns: the four that stay distinct at 48 px (tests/shapes.py draws more).
TRAINED_SHAPES = ("circle", "square", "triangle", "star")
IMAGE_SIZE = 48
MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
#: With --shapes: 64 px and a wider, deeper image tower, so that shapes stay apart.
SHAPES_IMAGE_SIZE = 64
SHAPES_MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": SHAPES_IMAGE_SIZE, "layers": 4, "width": 128, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
PREPROCESS_CFG = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "squash",
}


def render(colour: str, shape: str, rng: random.Random, image_size: int = IMAGE_SIZE) -> np.ndarray:
    """A picture at a random size and aspect, squashed to the model's input size as clipsort does."""
    size = (rng.randint(image_size, 320), rng.randint(image_size, 320))
    image = make_picture(colour, size, rng, shape=shape)
    if rng.random() < 0.3:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=rng.randint(40, 95))
        image = Image.open(buffer).convert("RGB")
    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def captions_for(colour: str, shape: str, with_shapes: bool = False) -> list[list[str]]:
    """Caption groups for one picture: one group is drawn at random, then one caption of it."""
    colour_only = [t.format(colour) for t in DEFAULT_TEMPLATES] + [colour, f"something {colour}"]
    both = [t.format(f"{colour} {shape}") for t in DEFAULT_TEMPLATES] + [
        f"{colour} {shape}",
        f"a {shape} that is {colour}",
    ]
    if not with_shapes:
        return [colour_only + both]
    shape_only = [t.format(shape) for t in DEFAULT_TEMPLATES] + [shape, f"a {shape}"]
    return [colour_only, shape_only, both]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="[default: tiny-colours, or tiny-shapes with --shapes]")
    parser.add_argument("--shapes", action="store_true", help="learn shape names too (every group: distinct shapes)")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--per-colour", type=int, default=2500, help="pictures rendered per colour")
    parser.add_argument("--groups", type=int, default=None, help="groups per batch [default: 16, 32 with --shapes]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.groups = args.groups or (32 if args.shapes else 16)
    size = SHAPES_IMAGE_SIZE if args.shapes else IMAGE_SIZE
    model_cfg = SHAPES_MODEL_CFG if args.shapes else MODEL_CFG
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape_names = TRAINED_SHAPES if args.shapes else SHAPES
    args.out = args.out or Path(__file__).with_name("tiny-shapes" if args.shapes else "tiny-colours")

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    colours = list(COLOURS)
    start = time.time()
    pictures = np.zeros((len(colours), args.per_colour, size, size, 3), dtype=np.uint8)
    shapes = np.zeros((len(colours), args.per_colour), dtype=np.int64)
    for c, colour in enumerate(colours):
        for i in range(args.per_colour):
            s = rng.randrange(len(shape_names))
            shapes[c, i] = s
            pictures[c, i] = render(colour, shape_names[s], rng, size)
    by_shape = [[np.flatnonzero(shapes[c] == s).tolist() for s in range(len(shape_names))] for c in range(len(colours))]
    print(f"rendered {pictures.shape[0] * pictures.shape[1]} pictures in {time.time() - start:.0f}s", flush=True)

    tokenizer = open_clip.SimpleTokenizer(context_length=model_cfg["text_cfg"]["context_length"])
    caption_tokens = {
        (c, s): [tokenizer(group) for group in captions_for(colour, shape, args.shapes)]
        for c, colour in enumerate(colours)
        for s, shape in enumerate(shape_names)
    }

    model = open_clip.CLIP(**model_cfg).to(device)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
    mean = torch.tensor(PREPROCESS_CFG["mean"], device=device).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"], device=device).view(1, 3, 1, 1)
    # With --shapes, shape captions are drawn half the time: shapes are the harder half to learn.
    group_weights = [1, 2, 1] if args.shapes else [1]
    k = len(shape_names) if args.shapes else len(colours)
    for step in range(1, args.steps + 1):
        images, texts = [], []
        for _ in range(args.groups):
            # With --shapes, every picture of a group also has its own shape, so that a shape
            # caption matches one picture of the group only.
            group_colours = rng.sample(range(len(colours)), k)
            shape_of = rng.sample(range(len(shape_names)), k) if args.shapes else None
            for g, c in enumerate(group_colours):
                if shape_of is not None:
                    i = rng.choice(by_shape[c][shape_of[g]])
                else:
                    i = rng.randrange(args.per_colour)
                picture = pictures[c, i]
                if rng.random() < 0.5:
                    picture = picture[:, ::-1]
                if rng.random() < 0.5:
                    picture = np.rot90(picture, rng.randrange(4))
                images.append(np.ascontiguousarray(picture))
                tokens = rng.choices(caption_tokens[(c, int(shapes[c, i]))], weights=group_weights)[0]
                texts.append(tokens[rng.randrange(len(tokens))])
        pixels = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div(255)
        pixels = (pixels - mean) / std
        image_features = F.normalize(model.encode_image(pixels), dim=-1).view(args.groups, k, -1)
        text_features = F.normalize(model.encode_text(torch.stack(texts).to(device)), dim=-1).view(args.groups, k, -1)
        logits = model.logit_scale.exp().clamp(max=100) * image_features @ text_features.transpose(1, 2)
        target = torch.arange(k, device=device).expand(args.groups, k).reshape(-1)
        loss = (
            F.cross_entropy(logits.reshape(-1, k), target)
            + F.cross_entropy(logits.transpose(1, 2).reshape(-1, k), target)
        ) / 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, np.log(100))
        if step % 100 == 0 or step == 1:
            accuracy = (logits.argmax(-1) == torch.arange(k, device=device)).float().mean().item()
            print(
                f"step {step:5d} loss {loss.item():.3f} acc {accuracy:.3f} "
                f"scale {model.logit_scale.exp().item():.1f} {time.time() - start:.0f}s",
                flush=True,
            )

    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().to(torch.float16).contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(args.out / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS_CFG}
    (args.out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(f"saved to {args.out} after {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
