"""Train the tiny CLIP that the end-to-end tests use, and save it in open_clip's local-dir layout.

    python tests/models/train_tiny_clip.py [--out tests/models/tiny-colours] [--steps 2500]

The model learns colour names from synthetic pictures of coloured shapes
(tests/shapes.py) with the CLIP paper's symmetric contrastive loss (Radford et
al. 2021, figure 3): cross-entropy over image->text and text->image logits,
``logit_scale`` learned. To avoid false negatives, the batch is made of groups in
which every picture has a different colour, and the loss is taken within each
group. Captions are the same prompt templates clipsort ensembles at inference
(``clipsort.labels.DEFAULT_TEMPLATES``), filled with the colour alone or with
"colour shape", so that a label file of plain colour names works.

About 3 minutes on a 2-core CPU. Weights are stored as float16 (under 4 MB).
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

IMAGE_SIZE = 48
MODEL_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 2, "width": 64, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
PREPROCESS_CFG = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bicubic",
    "resize_mode": "squash",
}


def render(colour: str, shape: str, rng: random.Random) -> np.ndarray:
    """A picture at a random size and aspect, squashed to the model's input size as clipsort does."""
    size = (rng.randint(48, 320), rng.randint(48, 320))
    image = make_picture(colour, size, rng, shape=shape)
    if rng.random() < 0.3:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=rng.randint(40, 95))
        image = Image.open(buffer).convert("RGB")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def captions_for(colour: str, shape: str) -> list[str]:
    texts = [t.format(colour) for t in DEFAULT_TEMPLATES]
    texts += [t.format(f"{colour} {shape}") for t in DEFAULT_TEMPLATES]
    texts += [colour, f"{colour} {shape}", f"a {shape} that is {colour}", f"something {colour}"]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("tiny-colours"))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--per-colour", type=int, default=2500, help="pictures rendered per colour")
    parser.add_argument("--groups", type=int, default=16, help="groups of one picture per colour in a batch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    colours = list(COLOURS)
    start = time.time()
    pictures = np.zeros((len(colours), args.per_colour, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    shapes = np.zeros((len(colours), args.per_colour), dtype=np.int64)
    for c, colour in enumerate(colours):
        for i in range(args.per_colour):
            s = rng.randrange(len(SHAPES))
            shapes[c, i] = s
            pictures[c, i] = render(colour, SHAPES[s], rng)
    print(f"rendered {pictures.shape[0] * pictures.shape[1]} pictures in {time.time() - start:.0f}s", flush=True)

    tokenizer = open_clip.SimpleTokenizer(context_length=MODEL_CFG["text_cfg"]["context_length"])
    caption_tokens = {
        (c, s): tokenizer(captions_for(colour, shape))
        for c, colour in enumerate(colours)
        for s, shape in enumerate(SHAPES)
    }

    model = open_clip.CLIP(**MODEL_CFG)
    model.train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
    mean = torch.tensor(PREPROCESS_CFG["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(PREPROCESS_CFG["std"]).view(1, 3, 1, 1)
    k = len(colours)
    for step in range(1, args.steps + 1):
        images, texts = [], []
        for _ in range(args.groups):
            for c in range(k):
                i = rng.randrange(args.per_colour)
                picture = pictures[c, i]
                if rng.random() < 0.5:
                    picture = picture[:, ::-1]
                if rng.random() < 0.5:
                    picture = np.rot90(picture, rng.randrange(4))
                images.append(np.ascontiguousarray(picture))
                tokens = caption_tokens[(c, int(shapes[c, i]))]
                texts.append(tokens[rng.randrange(len(tokens))])
        pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255)
        pixels = (pixels - mean) / std
        image_features = F.normalize(model.encode_image(pixels), dim=-1).view(args.groups, k, -1)
        text_features = F.normalize(model.encode_text(torch.stack(texts)), dim=-1).view(args.groups, k, -1)
        logits = model.logit_scale.exp().clamp(max=100) * image_features @ text_features.transpose(1, 2)
        target = torch.arange(k).expand(args.groups, k).reshape(-1)
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
            accuracy = (logits.argmax(-1) == torch.arange(k)).float().mean().item()
            print(
                f"step {step:5d} loss {loss.item():.3f} acc {accuracy:.3f} "
                f"scale {model.logit_scale.exp().item():.1f} {time.time() - start:.0f}s",
                flush=True,
            )

    model.eval()
    args.out.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float16).contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(args.out / "open_clip_model.safetensors"))
    config = {"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}
    (args.out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    print(f"saved to {args.out} after {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
