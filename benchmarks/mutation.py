"""Mutation testing of the code that guards people's files, decides, and sets exit codes.

    pip install -e ".[mutation]"                       # cosmic-ray
    python benchmarks/mutation.py                      # every module below (hours on 2 cores)
    python benchmarks/mutation.py clipsort/labels/decide.py   # one module
    python benchmarks/mutation.py --work ~/mutants     # keep (and resume) the sessions there
    python benchmarks/mutation.py --work ~/mutants --recheck   # only the survivors, against today's tests
    python benchmarks/mutation.py clipsort/writes/mover.py --functions plan --work ~/m2   # one function only

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

``--recheck`` runs only the survivors of the sessions in ``--work`` again, each applied from its
recorded diff to a fresh copy of the checkout as it is now: after tests were written for them,
this says which survive still, in minutes instead of the hours of a whole run (a survivor whose
lines were rewritten since is counted as gone: run that module again).

Not run by .ci/run: a module takes minutes to hours. Needs git, patch and cosmic-ray.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_JOURNAL_TESTS = [
    "tests/test_recovery.py",
    "tests/test_journal_read.py",
    "tests/test_journal_write.py",
    "tests/test_journal_trust.py",
    "tests/test_races.py",
    "tests/test_safety.py",
    "tests/test_properties.py",
    "tests/test_mover.py",
]
#: Each module, and the tests that guard it (the fast ones: slow end-to-end tests are left out).
MODULES: dict[str, list[str]] = {
    "clipsort/writes/placing.py": [
        "tests/test_recovery.py",
        "tests/test_races.py",
        "tests/test_mover.py",
        "tests/test_safety.py",
        "tests/test_journal_trust.py",
    ],
    "clipsort/writes/mover.py": ["tests/test_mover.py", "tests/test_races.py", "tests/test_hostile_input.py"],
    "clipsort/writes/recovery.py": _JOURNAL_TESTS,
    "clipsort/store/journal.py": _JOURNAL_TESTS,
    "clipsort/store/journal_read.py": _JOURNAL_TESTS,
    "clipsort/store/journal_check.py": _JOURNAL_TESTS,
    "clipsort/labels/decide.py": ["tests/test_decide.py", "tests/test_decisions.py"],
    "clipsort/writes/xmp_dom.py": [
        "tests/test_sidecar.py",
        "tests/test_properties.py",
        "tests/test_sidecar_readers.py",
    ],
    "clipsort/writes/sidecar.py": ["tests/test_sidecar.py", "tests/test_properties.py", "tests/test_hostile_input.py"],
    "clipsort/safe_files.py": [
        "tests/test_safe_files.py",
        "tests/test_sidecar.py",
        "tests/test_journal_read.py",
        "tests/test_journal_write.py",
        "tests/test_hostile_input.py",
        "tests/test_journal_trust.py",
        "tests/test_races.py",
    ],
    "clipsort/photos/location.py": [
        "tests/test_sidecar.py",
        "tests/test_remote.py",
        "tests/test_cache.py",
        "tests/test_pipeline.py",
    ],
    "clipsort/run/report.py": ["tests/test_report.py", "tests/test_cli.py", "tests/test_races.py"],
    "clipsort/cli/journal.py": ["tests/test_races.py", "tests/test_journal_trust.py", "tests/test_safety.py"],
    "clipsort/writes/sort_plan.py": ["tests/test_sort_plan.py"],
    "clipsort/commands/apply_plan.py": ["tests/test_sort_plan.py"],
    "clipsort/photos/ignore.py": ["tests/test_discover.py"],
    "clipsort/photos/discover.py": [
        "tests/test_discover.py",
        "tests/test_clip_frames.py",
        "tests/test_library_files.py",
        "tests/test_pairs_and_dates.py",
    ],
    "clipsort/model/clip_frames.py": ["tests/test_clip_frames.py"],
    "clipsort/model/prepare/weights.py": ["tests/test_graphs.py"],
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


def test_command(tests: list[str], scratch: Path) -> str:
    """The command that tests one mutant; ``scratch`` is its pytest temp folder, one per session, so
    that sessions run side by side never clear each other's files."""
    return f"{sys.executable} -m pytest -x -q -p no:cacheprovider -m 'not slow' --basetemp={scratch} " + " ".join(tests)


def keep_only(session: Path, functions: list[str]) -> None:
    """Leave in a new session only the mutants inside ``functions`` (after rewriting them, mutate
    just those)."""
    with contextlib.closing(sqlite3.connect(session)) as db, db:
        marks = ",".join("?" * len(functions))
        doomed = f"SELECT job_id FROM mutation_specs WHERE coalesce(definition_name, '') NOT IN ({marks})"
        db.execute(f"DELETE FROM work_results WHERE job_id IN ({doomed})", functions)
        db.execute(f"DELETE FROM work_items WHERE job_id IN ({doomed})", functions)
        db.execute(f"DELETE FROM mutation_specs WHERE coalesce(definition_name, '') NOT IN ({marks})", functions)


def run_module(
    module: str, tests: list[str], copy: Path, work: Path, timeout: float, functions: list[str] | None = None
) -> dict:
    session = work / (module.replace("/", "_") + ".sqlite")
    config = work / (module.replace("/", "_") + ".toml")
    command = test_command(tests, work / (module.replace("/", "_") + ".tmp"))
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
    missing = [test for test in tests if not (copy / test).exists()]
    if missing:  # pytest would fail at once, and every mutant would count as killed
        raise SystemExit(f"{copy} (made once per --work folder) lacks {', '.join(missing)}: use a new --work folder")
    if not session.exists():
        subprocess.run([str(tools / "cosmic-ray"), "init", str(config), str(session)], cwd=copy, env=env, check=True)
        subprocess.run([str(tools / "cr-filter-operators"), str(session), str(config)], cwd=copy, env=env, check=True)
        if functions:
            keep_only(session, functions)
        baseline = subprocess.run([str(tools / "cosmic-ray"), "baseline", str(config)], cwd=copy, env=env)
        if baseline.returncode != 0:
            raise SystemExit(f"{module}: the tests fail without any mutation; fix them first")
    subprocess.run([str(tools / "cosmic-ray"), "exec", str(config), str(session)], cwd=copy, env=env, check=True)
    dump = subprocess.run(
        [str(tools / "cosmic-ray"), "dump", str(session)], cwd=copy, env=env, capture_output=True, text=True, check=True
    )
    return {"module": module, **parse_dump(dump.stdout)}


#: What pytest prints when it ran nothing (exit code 4 or 5), which cosmic-ray would count as a kill.
_NO_TESTS = "no tests ran"


def parse_dump(text: str) -> dict:
    """Counts by outcome, and the survivors, of a session's ``cosmic-ray dump``."""
    counts: dict[str, int] = {}
    survivors = []
    for line in text.splitlines():
        job, result = json.loads(line)
        outcome = "pending" if result is None else (result.get("test_outcome") or result.get("worker_outcome"))
        if result is not None and result.get("worker_outcome") == "skipped":
            outcome = "skipped"
        if outcome == "killed" and _NO_TESTS in (result.get("output") or ""):
            outcome = "no tests ran"  # the tests never started (a missing file, a bad option): not a kill
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "survived":
            mutation = job["mutations"][0]
            survivors.append(
                {
                    "line": mutation["start_pos"][0],
                    "occurrence": mutation["occurrence"],
                    "operator": mutation["operator_name"],
                    "in": mutation.get("definition_name"),
                    "diff": result.get("diff", ""),
                }
            )
    return {"counts": counts, "survivors": sorted(survivors, key=lambda s: s["line"])}


def recheck(module: str, tests: list[str], session_dir: Path, copy: Path, timeout: float) -> dict:
    """The survivors of ``module``'s session, each applied alone (its recorded diff, which still
    applies where only other lines moved) to ``copy``, the checkout as it is now, and tested again.
    Those the tests now catch count as killed; those whose lines were rewritten since are counted
    as ``gone`` (the mutated code is no longer there: run the module again for its new code)."""
    result = survivors_of(module, session_dir)
    target = copy / module
    original = target.read_bytes()
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    still, gone, timed_out = [], 0, 0
    for survivor in result["survivors"]:
        try:
            applied = subprocess.run(
                ["patch", "--no-backup-if-mismatch", "--reject-file=-", "--quiet", "--force", "--fuzz=0", str(target)],
                input=survivor["diff"].rstrip("\n") + "\n",  # cosmic-ray's diff lacks the last newline
                text=True,
                capture_output=True,
            )
            if applied.returncode != 0:
                gone += 1
                continue
            try:
                command = test_command(tests, session_dir / (module.replace("/", "_") + ".recheck.tmp"))
                tested = subprocess.run(command, shell=True, cwd=copy, env=env, capture_output=True, timeout=timeout)
                if tested.returncode in (4, 5):  # pytest's usage error, no tests collected: nothing was tested
                    raise SystemExit(f"{module}: the tests did not run:\n{tested.stdout.decode()[-2000:]}")
                caught = tested.returncode != 0
            except subprocess.TimeoutExpired:  # slow or hung: not counted as killed; listed to look at
                timed_out += 1
                survivor = {**survivor, "in": f"{survivor['in']}, timed out"}
                caught = False
        finally:
            target.write_bytes(original)
        if not caught:
            still.append(survivor)
    counts = dict(result["counts"])
    counts["killed"] = counts.get("killed", 0) + len(result["survivors"]) - len(still) - gone
    counts["survived"] = len(still)
    if gone:
        counts["gone"] = gone
    if timed_out:
        counts["timed out"] = timed_out
    return {"module": module, "counts": counts, "survivors": still}


def survivors_of(module: str, work: Path) -> dict:
    """The counts and survivors recorded in ``module``'s finished session in ``work``."""
    session = work / (module.replace("/", "_") + ".sqlite")
    if not session.exists():
        raise SystemExit(f"{module}: no session in {work} to recheck; run it first")
    tools = Path(sys.executable).parent
    dump = subprocess.run([str(tools / "cosmic-ray"), "dump", str(session)], capture_output=True, text=True, check=True)
    return {"module": module, **parse_dump(dump.stdout)}


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
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="test only the survivors of the sessions in --work, against the checkout as it is now",
    )
    parser.add_argument(
        "--functions", help="only the mutants inside these functions (comma-separated), e.g. after rewriting them"
    )
    args = parser.parse_args()
    if args.recheck and args.work is None:
        parser.error("--recheck needs the --work folder of the sessions to recheck")
    if shutil.which("cosmic-ray", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("needs cosmic-ray: pip install cosmic-ray")
    work = args.work or Path(tempfile.mkdtemp(prefix="clipsort-mutation-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.recheck:
        copy = work / f"recheck-{os.getpid()}"  # the checkout as it is now, this run's own
        shutil.rmtree(copy, ignore_errors=True)
        copy = scratch_copy(copy)
    else:
        copy = scratch_copy(work / "repository")
    results = []
    for module in args.modules or list(MODULES):
        start = time.monotonic()
        tests = MODULES.get(module, ["tests"])
        if args.recheck:
            result = recheck(module, tests, work, copy, args.timeout)
        else:
            functions = args.functions.split(",") if args.functions else None
            result = run_module(module, tests, copy, work, args.timeout, functions)
        results.append(result)
        print(f"{module}: {result['counts']} in {time.monotonic() - start:.0f} s", flush=True)
        args.report.write_text(report(results), encoding="utf-8")
    print(report(results))


if __name__ == "__main__":
    main()
