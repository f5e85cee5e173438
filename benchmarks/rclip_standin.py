"""Random-weight stand-ins for rclip's model files, so rclip can be timed beside clipsort offline.

    python benchmarks/rclip_standin.py DATADIR
    RCLIP_DATADIR=DATADIR HF_HUB_OFFLINE=1 rclip -f "a photo"     # indexes the current folder

rclip 4.x runs ViT-B-32-256 (the datacomp_s34b_b86k weights) through ONNX Runtime,
loading ``DATADIR/ViT-B-32-256-datacomp_s34b_b86k/{visual,textual}.onnx`` (inputs named
``input``, outputs ``output``), ``DATADIR/tokenizer/bpe_simple_vocab_16e6.txt.gz`` and
four licence files, which it otherwise downloads from the Hugging Face Hub. This script
exports the same architecture from open_clip with random weights (fp32, batch axis
dynamic) into that layout: the same amount of arithmetic, so the same speed, but the
vectors mean nothing. Needs the ``onnx`` package beside torch (``pip install onnx``).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
ARCHITECTURE = "ViT-B-32-256"
LEGAL = ("LICENSE", "OPENAI-CLIP-MIT.txt", "README.md", "THIRD_PARTY_NOTICES.md")


def build(datadir: Path) -> None:
    import open_clip
    import torch

    from clipsort.model.artifact import OPSET
    from clipsort.model.prepare.towers import export_onnx  # the same ONNX export as clipsort's fast runtime

    torch.manual_seed(0)
    model = open_clip.create_model(ARCHITECTURE, pretrained=None).eval()
    target = datadir / SUBDIR
    target.mkdir(parents=True, exist_ok=True)

    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    batch, output = {0: "batch"}, {"output": {0: "batch"}}
    pixels = torch.randn(2, 3, size, size)
    export_onnx(model, model.encode_image, {"input": (pixels, batch)}, output, target / "visual.onnx", OPSET)
    tokens = open_clip.get_tokenizer(ARCHITECTURE)(["a photo", "a dog"])
    export_onnx(model, model.encode_text, {"input": (tokens, batch)}, output, target / "textual.onnx", OPSET)
    vocab = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    (datadir / "tokenizer").mkdir(exist_ok=True)
    shutil.copyfile(vocab, datadir / "tokenizer" / vocab.name)
    with gzip.open(vocab) as check:  # the vocabulary must be readable, or rclip fails later
        check.readline()
    for name in LEGAL:
        (datadir / name).write_text("Random-weight stand-in built by clipsort's benchmarks/rclip_standin.py.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datadir", type=Path, help="the folder to pass to rclip as RCLIP_DATADIR")
    build(parser.parse_args().datadir)


if __name__ == "__main__":
    main()
