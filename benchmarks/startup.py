"""Start-up of whole commands, side by side with rclip, in one run (issue: fast start).

    python benchmarks/startup.py [--runs 5] [--rclip PATH] [--against DIR] [--model ViT-B-32 --pretrained none]
    python benchmarks/startup.py --first-run 160 [--rclip PATH] [--runs 3]

Every figure is a whole process, started fresh, median of ``--runs`` runs (peak RSS: the
median of the runs' peaks):

* ``index 1 photo``: ``clipsort index`` of one 12 MP JPEG into a new, empty embedding cache,
  for each CPU precision (int8 is what ``auto`` runs on CPUs). The fast runtime's artifact is
  built before the runs (its build time is printed once): it is built once per model and
  library versions, so this is what every later run pays.
* ``relabel``: ``clipsort tag --dry-run`` over a 200-photo library whose vectors are cached
  (indexed, then tagged once), each run with a label file of ten labels never seen before
  (120 new prompts); the towers each run opened are listed (a relabel must open no image tower).
* ``search``: ``clipsort search`` over the same library, a new query each run (its 12
  prompts not cached), with and without ``--no-index`` (rclip's ``-n`` is the same).
* ``--against DIR``: another checkout of clipsort (``git worktree add DIR REV``), measured in the
  same run: each figure's runs alternate between this checkout and that one, so both meet the
  same machine (caches, clock, other load); each line then shows both and their ratio.
* ``rclip``: with ``--rclip PATH`` (rclip >= 4 in a Python 3.12 venv, given random-weight
  stand-ins of its model by benchmarks/rclip_standin.py): ``rclip -f`` indexing one photo
  from scratch, and a query over the 200 photos it has indexed (``rclip -n``, no indexing).

The model is ViT-B-32 with random weights by default: the real model's size and speed.

``--first-run N`` measures instead a person's first run of a model they never used, beside
rclip's whole first run, on the same N photos of 8-12 MP (built as benchmarks/throughput.py
builds them): ``clipsort tag FOLDER --labels ... --dry-run`` with an empty cache folder (the
model's fast runtime is prepared in that run), then the same with the runtime kept and a new
embedding cache (every later run), and ``rclip -f QUERY`` indexing the folder from scratch (its
model files already in place, as after its download). The model is a ViT-B-32 in a model folder
with random weights in a safetensors file: loaded as real weights are, the real model's size
(its towers written from that file, without torch). The same weights as a pickled ``.bin``
give the first run of a model prepared through open_clip and torch (every model that is not a
standard CLIP in safetensors).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]

#: Runs clipsort's CLI in a fresh interpreter and reports the towers it opened (to stderr).
WRAPPER = """
import sys
try:
    import clipsort.model.runtime as runtime
except ImportError:  # a checkout from before the stages were sub-packages (--against)
    import clipsort.runtime as runtime
opened = []
original = runtime.open_session
def recording(path, threads):
    opened.append(path.stem)
    return original(path, threads)
runtime.open_session = recording
original_torchscript = runtime.torchscript_tower
def recording_torchscript(path, threads):
    opened.append(path.stem)
    return original_torchscript(path, threads)
runtime.torchscript_tower = recording_torchscript
from clipsort.cli import run
try:
    run(sys.argv[1:])  # as the console script runs
except SystemExit as exit:
    code = exit.code
print("TOWERS", ",".join(opened) or "none", "TORCH", "torch" in sys.modules, file=sys.stderr)
sys.exit(code)
"""

WORDS = (
    "car bicycle sunset forest portrait food snow concert baby wedding river bridge castle garden kitchen horse "
    "tractor lighthouse desert waterfall museum harbour violin candle market temple glacier meadow volcano canyon"
).split()


def whole(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, float, str]:
    """(seconds, peak RSS in MiB, stderr) of one process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss / 1024, stderr


def medians(runs: list[tuple[float, float, str]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def clipsort(*args: str) -> list[str]:
    return [sys.executable, "-c", WRAPPER, *args]


def alternating(
    trees: dict[str, Path], runs: int, command: Callable[[int, str], list[str]], env: dict[str, str]
) -> dict[str, list[tuple[float, float, str]]]:
    """``runs`` runs of ``command(run, tree name)`` for each checkout, taking turns (ABAB...)."""
    results: dict[str, list[tuple[float, float, str]]] = {name: [] for name in trees}
    for i in range(runs):
        for name, tree in trees.items():
            results[name].append(whole(command(i, name), dict(env, PYTHONPATH=str(tree))))
    return results


def report(label: str, results: dict[str, list[tuple[float, float, str]]]) -> None:
    """One line per checkout (median seconds and peak RSS, the towers opened), and their ratio."""
    times = {}
    for name, runs in results.items():
        seconds, rss = medians(runs)
        times[name] = seconds
        towers = runs[-1][2].split("TOWERS")[-1].strip()
        where = f" [{name}]" if len(results) > 1 else ""
        print(f"  clipsort {label:17s} {seconds:5.2f} s   peak RSS {rss:5.0f} MiB   opened: {towers}{where}")
    if "against" in times:
        print(f"    this / against: {times['this'] / times['against']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="none")
    parser.add_argument("--precisions", default="int8,fp32,bf16", help="comma-separated, for `index 1 photo`")
    parser.add_argument("--rclip", help="rclip's executable (rclip >= 4)")
    parser.add_argument("--against", type=Path, help="another checkout of clipsort, measured alternately")
    parser.add_argument("--first-run", type=int, metavar="N", help="measure the first run of a new model on N photos")
    args = parser.parse_args()
    if args.first_run:
        first_run(args)
        return
    trees = {"this": ROOT} | ({"against": args.against.resolve()} if args.against else {})
    # Measure clipsort as an installed copy runs: with its modules' compiled bytecode, which pip
    # writes at install time (an environment that forbids writing it recompiles every module of
    # every process: 0.1 s of each start here).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    model = ["--model", args.model, "--pretrained", args.pretrained, "--device", "cpu", "-q"]
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")

    with tempfile.TemporaryDirectory(prefix="clipsort-startup-") as tmp_name:
        tmp = Path(tmp_name)
        env = dict(os.environ, CLIPSORT_CACHE_DIR=str(tmp / "cache-dir"), HF_HUB_OFFLINE="1")
        one, library = tmp / "one", tmp / "library"
        one.mkdir()
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)).save(one / "IMG_0001.jpg", quality=90)
        from shapes import make_picture

        library.mkdir()
        pick = random.Random(1)
        for i in range(200):
            picture = make_picture(pick.choice(["red", "green", "blue"]), (1600, 1200), pick)
            picture.save(library / f"IMG_{i:04d}.jpg", quality=88)

        for name, tree in trees.items():  # builds the artifact (once for all CPU precisions)
            for precision in args.precisions.split(","):
                seconds, rss, _ = whole(
                    clipsort("index", str(one), *model, "--precision", precision, "--cache", str(tmp / "warm.sqlite3")),
                    dict(env, PYTHONPATH=str(tree)),
                )
                print(f"first run, {precision} [{name}]: {seconds:.1f} s, peak RSS {rss:.0f} MiB")
                (tmp / "warm.sqlite3").unlink()

        print(f"\nindex 1 photo (12 MP), new embedding cache, whole process, median of {args.runs}:")
        for precision in args.precisions.split(","):
            results = alternating(
                trees,
                args.runs,
                lambda i, name, precision=precision: clipsort(
                    "index", str(one), *model, "--precision", precision, "--cache", str(tmp / f"one-{name}-{i}.sqlite3")
                ),
                env,
            )
            report(precision, results)

        cache = str(tmp / "library.sqlite3")
        seconds, _, _ = whole(clipsort("index", str(library), *model, "--cache", cache), env)
        (tmp / "labels-0.txt").write_text("red\ngreen\nblue\n")
        first, _, _ = whole(
            clipsort("tag", str(library), "--labels", str(tmp / "labels-0.txt"), "--dry-run", *model, "--cache", cache),
            env,
        )
        print(f"\nlibrary: 200 photos of 2 MP indexed in {seconds:.1f} s, first tag {first:.2f} s")

        def relabel(i: int, name: str) -> list[str]:
            labels = tmp / f"labels-{name}-{i + 1}.txt"  # labels no run has seen: their prompts are not cached
            labels.write_text("".join(f"{word} {i} {name}\n" for word in WORDS[i % 3 * 10 : i % 3 * 10 + 10]))
            return clipsort("tag", str(library), "--labels", str(labels), "--dry-run", *model, "--cache", cache)

        print(f"relabel, 10 new labels (120 prompts), whole process, median of {args.runs}:")
        report("int8", alternating(trees, args.runs, relabel, env))
        print(f"search, a new query each run, the same library, whole process, median of {args.runs}:")
        for extra in ([], ["--no-index"]):
            results = alternating(
                trees,
                args.runs,
                lambda i, name, extra=extra: clipsort(
                    "search", f"a {WORDS[i]} {i} {len(extra)} {name}", str(library), *extra, *model, "--cache", cache
                ),
                env,
            )
            report("search --no-index" if extra else "search", results)

        if args.rclip:
            datadir, renv = rclip_ready(tmp)
            seconds, rss = rclip_first_runs(args.rclip, datadir, renv, one, args.runs)
            print(f"  rclip index 1 photo      {seconds:5.2f} s   peak RSS {rss:5.0f} MiB")
            for stale in datadir.glob("db.sqlite3*"):
                stale.unlink()
            whole([args.rclip, "-f", "a photo"], renv, cwd=library)
            runs = [
                whole([args.rclip, "-n", "-f", f"a photo of a {WORDS[i]}"], renv, cwd=library) for i in range(args.runs)
            ]
            seconds, rss = medians(runs)
            print(f"  rclip query, 200 indexed {seconds:5.2f} s   peak RSS {rss:5.0f} MiB")
        else:
            print("rclip not measured (pass --rclip PATH)")


def rclip_ready(tmp: Path) -> tuple[Path, dict[str, str]]:
    """rclip's data folder with its model's stand-ins in place, and the environment that names it.
    Built in a process of its own: it imports torch, and a child's peak RSS (ru_maxrss) starts from
    its parent's at fork, so this process must stay small."""
    datadir = tmp / "rclip-data"
    standin = [sys.executable, str(ROOT / "benchmarks" / "rclip_standin.py"), str(datadir)]
    subprocess.run(standin, check=True, capture_output=True)
    return datadir, dict(os.environ, RCLIP_DATADIR=str(datadir), HF_HUB_OFFLINE="1")


def rclip_first_runs(rclip: str, datadir: Path, env: dict[str, str], folder: Path, runs: int) -> tuple[float, float]:
    """Median seconds and peak RSS of ``rclip -f`` indexing ``folder`` from scratch, ``runs`` times."""
    results = []
    for _ in range(runs):
        for stale in datadir.glob("db.sqlite3*"):
            stale.unlink()
        results.append(whole([rclip, "-f", "a photo"], env, cwd=folder))
    return medians(results)


def first_run(args: argparse.Namespace) -> None:
    """A new model's first run over N photos of 8-12 MP, later runs, and rclip's whole first run."""
    from throughput import build

    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="clipsort-first-run-") as tmp_name:
        tmp = Path(tmp_name)
        photos = tmp / "photos"
        start = time.perf_counter()
        build(photos, args.first_run)
        print(f"built {args.first_run} JPEGs of 8-12 MP in {time.perf_counter() - start:.0f} s")
        model = tmp / "ViT-B-32-model"
        subprocess.run([sys.executable, "-c", MODEL_FOLDER, str(model)], check=True, capture_output=True)
        pickled = tmp / "ViT-B-32-pickled"  # the same weights in a pickled .bin: prepared through open_clip
        subprocess.run([sys.executable, "-c", PICKLED_FOLDER, str(model), str(pickled)], check=True)
        (tmp / "labels.txt").write_text("".join(f"{word}\n" for word in WORDS[:10]))
        command = ["tag", str(photos), "--labels", str(tmp / "labels.txt"), "--dry-run", "-q", "--device", "cpu"]
        firsts, laters, through = [], [], []
        for i in range(args.runs):
            env = dict(os.environ, CLIPSORT_CACHE_DIR=str(tmp / f"new-{i}"), HF_HUB_OFFLINE="1")
            # nothing cached: the runtime is prepared in the run
            firsts.append(whole(clipsort(*command, "--model", f"local-dir:{model}"), env))
            env["CLIPSORT_CACHE"] = str(tmp / f"later-{i}.sqlite3")  # the runtime kept, a new embedding cache
            laters.append(whole(clipsort(*command, "--model", f"local-dir:{model}"), env))
            env = dict(os.environ, CLIPSORT_CACHE_DIR=str(tmp / f"pickled-{i}"), HF_HUB_OFFLINE="1")
            through.append(whole(clipsort(*command, "--model", f"local-dir:{pickled}"), env))
        seconds, rss = medians(firsts)
        print(f"\n{args.first_run} photos, whole process, median of {args.runs}:")
        print(f"  clipsort first run of a new model  {seconds:6.1f} s   peak RSS {rss:5.0f} MiB")
        later, later_rss = medians(laters)
        print(f"  clipsort later run (new cache)     {later:6.1f} s   peak RSS {later_rss:5.0f} MiB")
        other, other_rss = medians(through)
        print(f"  first run, pickled .bin weights    {other:6.1f} s   peak RSS {other_rss:5.0f} MiB (via open_clip)")
        if not args.rclip:
            print("rclip not measured (pass --rclip PATH)")
            return
        datadir, renv = rclip_ready(tmp)
        rclip_seconds, rclip_rss = rclip_first_runs(args.rclip, datadir, renv, photos, args.runs)
        print(f"  rclip whole first run (indexing)   {rclip_seconds:6.1f} s   peak RSS {rclip_rss:5.0f} MiB")
        ratios = f"first run / rclip: {seconds / rclip_seconds:.2f}; later run / rclip: {later / rclip_seconds:.2f}"
        print(f"  clipsort {ratios}")


#: Writes a ViT-B-32 model folder (open_clip's layout) with random weights in a safetensors file.
MODEL_FOLDER = """
import json, sys
from pathlib import Path
import open_clip, torch
from safetensors.torch import save_file
folder = Path(sys.argv[1])
folder.mkdir(parents=True)
torch.manual_seed(0)
model = open_clip.create_model("ViT-B-32", pretrained=None)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
preprocess = {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
              "interpolation": "bicubic", "resize_mode": "shortest"}
config = {"model_cfg": open_clip.get_model_config("ViT-B-32"), "preprocess_cfg": preprocess}
(folder / "open_clip_config.json").write_text(json.dumps(config))
"""


#: Copies a model folder with its weights as a pickled ``.bin`` (open_clip_pytorch_model.bin).
PICKLED_FOLDER = """
import shutil, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
target.mkdir(parents=True)
shutil.copy(source / "open_clip_config.json", target)
torch.save(load_file(str(source / "open_clip_model.safetensors")), target / "open_clip_pytorch_model.bin")
"""


if __name__ == "__main__":
    main()
