"""Mutation testing of the code that guards people's files, decides, and sets exit codes.

    pip install -e ".[mutation]"                       # cosmic-ray
    python benchmarks/mutation.py                      # every module below (hours on 2 cores)
    python benchmarks/mutation.py clipsort/decide.py   # one module
    python benchmarks/mutation.py --work ~/mutants     # keep (and resume) the sessions there

Each module is mutated one small change at a time (a comparison turned, a condition negated, a
constant changed, an exception handler widened...) and the tests that guard it are run against
each mutant: a mutant that no test notices is a bug the suite would let through. The result,
per module, is printed and written to ``--report`` (markdown): counts, and each survivor with
its diff, for docs/testing.md, where every survivor is either killed by a new test or explained
as equivalent (it cannot change what a user sees).

Why cosmic-ray: it applies each mutation to the module's file on disk, so the many tests that run
``python -m clipsort`` in a child process see the mutant too (a tool that patches modules in
memory, as mutmut 3 does, would let every mutant survive those tests). The mutants are applied
to a scratch copy of the repository (``git ls-files``), which the tests import through
PYTHONPATH: the checkout is never touched, even if the run is killed. Replacements of one
arithmetic or bitwise operator by another (``|`` of open flags to ``**``...) are left out: they
cost most of the time and are caught by any test that opens a file.

Not run by .ci/run: a module takes minutes to hours. Needs git and cosmic-ray.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_JOURNAL_TESTS = [
    "tests/test_journal_trust.py",
    "tests/test_races.py",
    "tests/test_safety.py",
    "tests/test_properties.py",
    "tests/test_mover.py",
]
#: Each module, and the tests that guard it (the fast ones: slow end-to-end tests are left out).
MODULES: dict[str, list[str]] = {
    "clipsort/placing.py": [
        "tests/test_races.py",
        "tests/test_mover.py",
        "tests/test_safety.py",
        "tests/test_journal_trust.py",
    ],
    "clipsort/mover.py": ["tests/test_mover.py", "tests/test_races.py", "tests/test_hostile_input.py"],
    "clipsort/recovery.py": _JOURNAL_TESTS,
    "clipsort/journal.py": _JOURNAL_TESTS,
    "clipsort/journal_read.py": _JOURNAL_TESTS,
    "clipsort/journal_check.py": _JOURNAL_TESTS,
    "clipsort/decide.py": ["tests/test_decide.py", "tests/test_decisions.py"],
    "clipsort/xmp_dom.py": ["tests/test_sidecar.py", "tests/test_properties.py", "tests/test_sidecar_readers.py"],
    "clipsort/sidecar.py": ["tests/test_sidecar.py", "tests/test_properties.py", "tests/test_hostile_input.py"],
    "clipsort/safe_files.py": ["tests/test_hostile_input.py", "tests/test_journal_trust.py", "tests/test_races.py"],
    "clipsort/report.py": ["tests/test_report.py", "tests/test_cli.py", "tests/test_races.py"],
    "clipsort/cli/journal.py": ["tests/test_races.py", "tests/test_journal_trust.py", "tests/test_safety.py"],
}
#: Operators left out (see the module's docstring).
EXCLUDED = [
    r"core/ReplaceBinaryOperator_.*_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|FloorDiv|Mod|Mul|Div)$",
    r"core/ReplaceBinaryOperator_(BitOr|BitAnd|BitXor|LShift|RShift|Pow|FloorDiv|Mod|Mul|Div)_.*",
]


def scratch_copy(folder: Path) -> Path:
    """The repository's files as they are in the working tree (tracked, and new ones git does not
    ignore), copied to ``folder`` (once; reused when it is there)."""
    if (folder / "pyproject.toml").exists():
        return folder
    listing = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run(listing, cwd=ROOT, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


def run_module(module: str, tests: list[str], copy: Path, work: Path, timeout: float) -> dict:
    session = work / (module.replace("/", "_") + ".sqlite")
    config = work / (module.replace("/", "_") + ".toml")
    command = f"{sys.executable} -m pytest -x -q -p no:cacheprovider -m 'not slow' " + " ".join(tests)
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(str(copy / module))}\n"
        f"timeout = {timeout}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        '[cosmic-ray.distributor]\nname = "local"\n'
        "[cosmic-ray.filters.operators-filter]\n"
        f"exclude-operators = {json.dumps(EXCLUDED)}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    tools = Path(sys.executable).parent
    if not session.exists():
        subprocess.run([str(tools / "cosmic-ray"), "init", str(config), str(session)], cwd=copy, env=env, check=True)
        subprocess.run([str(tools / "cr-filter-operators"), str(session), str(config)], cwd=copy, env=env, check=True)
        baseline = subprocess.run([str(tools / "cosmic-ray"), "baseline", str(config)], cwd=copy, env=env)
        if baseline.returncode != 0:
            raise SystemExit(f"{module}: the tests fail without any mutation; fix them first")
    subprocess.run([str(tools / "cosmic-ray"), "exec", str(config), str(session)], cwd=copy, env=env, check=True)
    dump = subprocess.run(
        [str(tools / "cosmic-ray"), "dump", str(session)], cwd=copy, env=env, capture_output=True, text=True, check=True
    )
    counts: dict[str, int] = {}
    survivors = []
    for line in dump.stdout.splitlines():
        job, result = json.loads(line)
        outcome = "pending" if result is None else (result.get("test_outcome") or result.get("worker_outcome"))
        if result is not None and result.get("worker_outcome") == "skipped":
            outcome = "skipped"
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "survived":
            mutation = job["mutations"][0]
            survivors.append(
                {
                    "line": mutation["start_pos"][0],
                    "operator": mutation["operator_name"],
                    "in": mutation.get("definition_name"),
                    "diff": result.get("diff", ""),
                }
            )
    return {"module": module, "counts": counts, "survivors": sorted(survivors, key=lambda s: s["line"])}


def report(results: list[dict]) -> str:
    lines = ["| module | mutants | killed | survived | other |", "|---|---|---|---|---|"]
    for result in results:
        counts = result["counts"]
        total = sum(v for k, v in counts.items() if k != "skipped")
        other = total - counts.get("killed", 0) - counts.get("survived", 0)
        lines.append(
            f"| `{result['module']}` | {total} | {counts.get('killed', 0)} | {counts.get('survived', 0)} | {other} |"
        )
    for result in results:
        for survivor in result["survivors"]:
            lines.append(f"\n### `{result['module']}`:{survivor['line']} ({survivor['in']}, {survivor['operator']})\n")
            lines.append("```diff\n" + survivor["diff"].strip() + "\n```")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all of MODULES)")
    parser.add_argument("--work", type=Path, help="where sessions are kept (default: a temporary folder)")
    parser.add_argument("--report", type=Path, default=Path("mutation-report.md"))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a mutant's tests may take")
    args = parser.parse_args()
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("needs cosmic-ray: pip install cosmic-ray")
    work = args.work or Path(tempfile.mkdtemp(prefix="clipsort-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    copy = scratch_copy(work / "repository")
    results = []
    for module in args.modules or list(MODULES):
        start = time.monotonic()
        result = run_module(module, MODULES.get(module, ["tests"]), copy, work, args.timeout)
        results.append(result)
        print(f"{module}: {result['counts']} in {time.monotonic() - start:.0f} s", flush=True)
        args.report.write_text(report(results), encoding="utf-8")
    print(report(results))


if __name__ == "__main__":
    main()
