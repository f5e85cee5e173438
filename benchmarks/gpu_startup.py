"""Where the start of a GPU run goes, phase by phase, in fresh processes (issue: GPU decode, start-up).

    python benchmarks/gpu_startup.py [--device cuda] [--runs 3] [--model ViT-B-32 --pretrained none]

Each run is a new Python process that does what ``clipsort index`` does before its first
batch, one phase after the other, and times each (medians of ``--runs``):

* ``import clipsort``: the command's own modules (what ``clipsort index`` imports first);
* ``import torch``, then CUDA's context (``torch.cuda.init()`` and a first allocation);
* ``import torchvision`` (nvJPEG's decoder; it imports ``torch._dynamo``);
* ``import open_clip`` (as clipsort imports it: without transformers or timm when the model
  needs neither), then the model built, its weights loaded and moved to the device at the
  run's precision (``clipsort.model.torch_model.load`` does the two, timed together);
* ``warm-up``: the first small batch through the image tower (cuBLAS and kernels set up);
* ``first batch``: a batch of ``--batch-size`` ready pixels.

Then a whole ``clipsort index`` of one 12 MP photo on the same device (start-up included).
With ``--device cpu`` (fp32 on torch) it gives the same phases on a machine without a GPU,
all but CUDA's. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

PHASES = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
import clipsort.cli.app, clipsort.model.embed, clipsort.run.pipeline
mark("import clipsort")
import torch
mark("import torch")
device, precision, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
if device.startswith("cuda"):
    torch.cuda.init()
    torch.zeros(1, device=device)
    torch.cuda.synchronize()
mark("CUDA context")
import torchvision
mark("import torchvision")
from clipsort.model import torch_model
from clipsort.model.model_spec import parse_spec
spec = parse_spec(sys.argv[4], sys.argv[5])
with torch_model._without_unused_packages(spec):
    import open_clip
mark("import open_clip")
model = torch_model.load(spec, device, precision)
mark("model built, loaded, warmed up")
pixels = [torch.zeros((3, model.image_size, model.image_size), dtype=torch.uint8) for _ in range(batch)]
model.encode_prepared(pixels)
mark("first batch")
print("PHASES " + json.dumps([(name, b - a) for (_, a), (name, b) in zip(marks, marks[1:])]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # as an installed copy runs (see startup.py)
    precision = "fp32" if args.device == "cpu" else "fp16"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    print(f"device {args.device}, {precision}, batch {args.batch_size}, {os.cpu_count()} cores, medians of {args.runs}")
    runs = []
    for _ in range(args.runs):
        out = subprocess.run(
            [sys.executable, "-c", PHASES, args.device, precision, str(args.batch_size), args.model, args.pretrained],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        line = next((x for x in out.stdout.splitlines() if x.startswith("PHASES ")), None)
        if line is None:
            sys.exit(f"the phases script failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(line[len("PHASES ") :]))
    names = [name for name, _ in runs[0]]
    total = 0.0
    for i, name in enumerate(names):
        seconds = statistics.median(run[i][1] for run in runs)
        total += seconds
        print(f"  {name:32s} {seconds:6.2f} s")
    print(f"  {'sum':32s} {total:6.2f} s")

    with tempfile.TemporaryDirectory(prefix="clipsort-gpu-startup-") as tmp_name:
        tmp = Path(tmp_name)
        rng = np.random.default_rng(0)
        (tmp / "one").mkdir()
        Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(tmp / "one" / "a.jpg", quality=90)
        command = [sys.executable, "-m", "clipsort", "index", str(tmp / "one"), "--model", args.model]
        command += ["--pretrained", args.pretrained, "--device", args.device, "-q"]
        # once untimed: on a CPU the first run builds the fast runtime (once per model and versions)
        subprocess.run([*command, "--cache", str(tmp / "warm.sqlite3")], capture_output=True, env=env, check=False)
        whole = []
        for i in range(args.runs):
            start = time.perf_counter()
            done = subprocess.run([*command, "--cache", str(tmp / f"c{i}.sqlite3")], capture_output=True, env=env)
            whole.append(time.perf_counter() - start)
            if done.returncode:
                sys.exit(f"clipsort index failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
        print(f"whole `clipsort index` of 1 photo on {args.device}: {statistics.median(whole):.2f} s")


if __name__ == "__main__":
    main()
