"""The house by stage (docs/architecture.md): imports run one way, down the stages, and the
places where a photo may be a URL are few. Read from the source, so it stays true as code moves."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "clipsort"
#: The stages, lowest first.
STAGES = ("photos", "labels", "store", "model", "writes", "run", "review", "commands", "cli")
#: Top-level modules every stage may use; they import no stage ("clipsort": the package's own
#: __init__, its version and the telemetry switch).
BASE = {"errors", "settings", "safe_files", "privacy", "clipsort"}
#: How the CLI shows things (the console, and the text it renders): may import any stage but the
#: CLI, which alone imports them.
CONSOLE = ("console", "render")
TOP_MODULES_MAX = 8
STAGE_MODULES_MAX = 14
#: "No module over ~400 lines" (the house rule): the exact figure, with no slack.
MODULE_LINES_MAX = 400


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))}


def imports_of(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Every clipsort module ``path`` imports, at its top, in functions and for type checking."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)  # from clipsort.x import module
    return {imported for imported in found if imported in known and imported != name}


def unit_of(name: str) -> str:
    """The stage a module belongs to, or the top-level module's own name."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "clipsort"


def allowed(stage: str, package: Path = PACKAGE) -> set[str]:
    """What ``stage`` may import, as its ``__init__`` docstring says (``May import: a, b.``)."""
    doc = ast.get_docstring(ast.parse((package / stage / "__init__.py").read_text(encoding="utf-8"))) or ""
    said = re.search(r"^May import: (.*)$", doc, re.MULTILINE)
    assert said is not None, f"clipsort/{stage}/__init__.py does not say what it may import"
    words = re.findall(r"[a-z_]+", said.group(1))
    return set() if words[:1] == ["nothing"] else set(words)


def violations(package: Path = PACKAGE) -> list[str]:
    known = modules(package)
    problems = []
    for name, path in known.items():
        unit = unit_of(name)
        for imported in sorted(imports_of(path, name, known)):
            target = unit_of(imported)
            if target == unit or target in BASE:
                continue
            if unit in STAGES:
                ok = target in allowed(unit, package)
            elif unit in CONSOLE:
                ok = (target in STAGES and target != "cli") or target in CONSOLE
            elif unit == "__main__":
                ok = target == "cli"
            else:  # the base and the package's own __init__: nothing above the base
                ok = False
            if not ok:
                problems.append(f"{name} imports {imported}")
    return problems


def test_every_import_runs_down_the_stages():
    assert violations() == []


def test_each_stage_may_import_only_stages_below_it():
    """The declared rules themselves run one way (so no cycle between stages is possible)."""
    for stage in STAGES:
        below = set(STAGES[: STAGES.index(stage)])
        extra = set(CONSOLE) if stage == "cli" else set()
        assert allowed(stage) <= below | extra, f"{stage} may import {sorted(allowed(stage) - below)}"


def stage_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    known = modules(package)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        unit = unit_of(name)
        graph.setdefault(unit, set()).update(unit_of(i) for i in imports_of(path, name, known) if unit_of(i) != unit)
    return graph


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (its nodes in order), or None."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail[trail.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        state[node] = 2
        trail.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_no_cycle_between_stages():
    assert cycle_in(stage_graph()) is None


def test_the_checks_see_an_import_that_runs_back_up_and_a_cycle(tmp_path):
    """The checks above are not blind: in a copy of the package, a module of photos that imports
    the pipeline (inside a function, where it is easy to miss) is named, and its cycle found."""
    copy = tmp_path / "clipsort"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "photos" / "rogue.py").write_text(
        '"""A photo reader that calls back up."""\n\n\n'
        "def late():\n    from clipsort.run.pipeline import find_photos\n",
        encoding="utf-8",
    )
    assert violations(copy) == ["clipsort.photos.rogue imports clipsort.run.pipeline"]
    cycle = cycle_in(stage_graph(copy))
    assert cycle is not None and "photos" in cycle and "run" in cycle
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_a_newcomer_can_map_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_MODULES_MAX, top
    stages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert stages == sorted(STAGES)
    for stage in STAGES:
        own = [p.name for p in (PACKAGE / stage).glob("*.py")]  # its __init__ counted too
        assert len(own) <= STAGE_MODULES_MAX, (stage, sorted(own))
    for name, path in modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines <= MODULE_LINES_MAX, f"{name}: {lines} lines"
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), f"{name} has no docstring"


def asks_what_a_location_is(path: Path, name: str, known: dict[str, Path]) -> bool:
    """Whether the module calls ``is_url`` or uses the store's side of locations directly."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = any(
        isinstance(n, ast.Name) and n.id == "is_url" or isinstance(n, ast.Attribute) and n.attr == "is_url"
        for n in ast.walk(tree)
    )
    return named or "clipsort.photos.remote" in imports_of(path, name, known)


def test_only_photos_and_the_ray_engine_ask_whether_a_photo_is_a_url():
    """Where a photo lives is decided in photos/ (clipsort.photos.location); other stages use the
    location without asking what it is. The Ray engine reads objects in stores itself."""
    known = modules()
    askers = sorted(
        name
        for name, path in known.items()
        if unit_of(name) != "photos"
        and name != "clipsort.run.engine_ray"
        and asks_what_a_location_is(path, name, known)
    )
    assert askers == []
    assert asks_what_a_location_is(known["clipsort.photos.location"], "clipsort.photos.location", known)
