"""The Typer application and its command groups; the command modules register on these. How every
command parses its numbers and shows its help (:class:`ClipsortCommand`)."""

from __future__ import annotations

import inspect
import math
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from clipsort import __version__

#: Where ``--help`` lists the options shared by the commands that run a model, after each command's own.
PANELS: dict[str, tuple[str, ...]] = {
    "Model and device": (
        "model", "pretrained", "device", "precision", "threads", "batch_size", "workers", "gpu_decode",
        "max_megapixels",
    ),
    "Engine and cluster": ("engine", "address"),
    "Files and cache": ("no_pairs", "follow_links", "include_managed", "exclude", "cache", "no_cache", "no_wait"),
    "Output": ("json_out", "quiet", "log", "paths_only", "null", "open_page"),
}  # fmt: skip
#: The options ``--help`` explains; the rest it names, and ``--help-all`` explains every one.
ESSENTIAL = frozenset(
    {
        "labels", "dest", "threshold", "margin", "pattern", "into", "dry_run", "review", "explain", "plan",
        "query", "like", "top", "similar", "examples", "output", "labelled", "target_precision", "json_out",
    }
)  # fmt: skip
#: A command with at most this many options explains them all in ``--help``.
FEW_OPTIONS = 12
#: Examples ``--help`` shows (``--help-all``: all of them).
EXAMPLES_SHOWN = 3


class ClipsortCommand(TyperCommand):
    """Usage lines as people write them: ``PATH...``, ``[JOURNAL]`` (Typer's own shows ``{PATH}...``),
    and numbers that are numbers: ``nan`` and ``inf`` parse as floats but mean nothing as a threshold,
    a margin or a size, and would pass every comparison's range check.

    Help that fits a screen: the command's essential options explained, the others named in panels
    (model and device, engine and cluster, files and cache, output), ``--help-all`` for every one;
    values as people write them (``0-1``, ``N``, ``move|copy|link``), never a type's name, and
    defaults shown one way, ``[default: ...]``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        for param in self.get_params(ctx):
            value = ctx.params.get(param.name or "")
            if isinstance(value, float) and not math.isfinite(value):
                raise typer.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
        return rest

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "ARG").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    # -- help ----------------------------------------------------------------------------------
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        help_option: Any = next((p for p in params if p.name == "help"), None)
        if help_option is None:
            return params
        if getattr(self, "_help_all", None) is None:

            def show_all(ctx: Any, _param: Any, value: bool) -> None:
                if value and not ctx.resilient_parsing:
                    ctx.meta["clipsort.help_all"] = True
                    typer.echo(ctx.get_help(), color=ctx.color)
                    ctx.exit()

            self._help_all = type(help_option)(
                param_decls=["--help-all"], is_flag=True, expose_value=False, is_eager=True, callback=show_all,
                help="Explain every option.",
            )  # fmt: skip
        return [*params, self._help_all]

    def _full(self, ctx: Any) -> bool:
        options = [p for p in self.get_params(ctx) if p.param_type_name == "option" and p.name not in HELP_NAMES]
        return bool(ctx.meta.get("clipsort.help_all")) or len(options) <= FEW_OPTIONS

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        text = inspect.cleandoc(self.help or "").partition("\f")[0]
        if not self._full(ctx):
            text = _short_text(text)
        if text:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(text)

    def format_options(self, ctx: Any, formatter: Any) -> None:
        full = self._full(ctx)
        params = [p for p in self.get_params(ctx) if not getattr(p, "hidden", False)]
        arguments = [p for p in params if p.param_type_name == "argument" and p.help]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl([(p.metavar or p.name.upper(), _help_text(p)) for p in arguments])
        options = [p for p in params if p.param_type_name == "option" and p.name not in HELP_NAMES]
        shared = {name for names in PANELS.values() for name in names}
        own = [p for p in options if p.name not in shared]
        explained = own if full else [p for p in own if p.name in ESSENTIAL]
        groups = [("Options", explained, True)]
        if not full:
            groups.append(("More options", [p for p in own if p not in explained], False))
        groups += [(title, [p for p in options if p.name in names], full) for title, names in PANELS.items()]
        for title, members, explain in groups:
            if not members:
                continue
            with formatter.section(title):
                if explain:
                    formatter.write_dl([_record(p) for p in members])
                else:
                    _write_names(formatter, [max(p.opts, key=len) for p in members])
        formatter.write_paragraph()
        said = "-h, --help: this help" + ("" if full else f"; --help-all: all {len(options)} options explained")
        formatter.write_text(said)


#: The help options themselves (listed last, under "Help").
HELP_NAMES = frozenset({"help", "help_all"})


def _short_text(text: str) -> str:
    """The first paragraph of a command's help and its first examples (``--help-all``: all of it)."""
    paragraphs = text.split("\n\n")
    examples = [p.strip() for p in paragraphs if p.strip().startswith("clipsort ")][:EXAMPLES_SHOWN]
    shown = paragraphs[0]
    if examples:
        shown += "\n\nExamples:\n\n\b\n" + "\n".join(f"  {example}" for example in examples)
    return shown


def _write_names(formatter: Any, names: list[str]) -> None:
    """Option names, as many to a line as fit, never cut at a hyphen."""
    import textwrap

    width = max(formatter.width - formatter.current_indent, 20)
    for line in textwrap.wrap(", ".join(names), width, break_on_hyphens=False, break_long_words=False):
        formatter.write(f"{'':>{formatter.current_indent}}{line}\n")


def _names(param: Any) -> str:
    return ", ".join(sorted(param.opts, key=len)) + "".join(f" / {o}" for o in param.secondary_opts)


def _record(param: Any) -> tuple[str, str]:
    names = _names(param)
    if not param.is_flag:
        names += f" {_metavar(param)}"
    return names, _help_text(param)


def _metavar(param: Any) -> str:
    """The value as people write it: ``0-1``, ``N``, ``move|copy|link``, ``PATH``; never a type's name."""
    if param.metavar:
        return str(param.metavar)
    kind = param.type
    choices = getattr(kind, "choices", None)
    if choices:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    name = type(kind).__name__
    if "Float" in name:
        low, high = getattr(kind, "min", None), getattr(kind, "max", None)
        return f"{low:g}-{high:g}" if low is not None and high is not None else "NUMBER"
    if "Int" in name:
        return "N"
    if "Path" in name:
        return "DIR" if not getattr(kind, "file_okay", True) else "PATH"
    return "TEXT"


def _help_text(param: Any) -> str:
    text = (param.help or "").strip()
    default = param.default
    shown = getattr(param, "show_default", True) is not False
    if shown and "[default" not in text and default not in (None, False, (), [], "") and not callable(default):
        if not (getattr(param, "is_flag", False) and default is True and not param.secondary_opts):
            value = "on" if default is True else getattr(default, "value", default)
            text += f" [default: {value}]"
    return text


app = typer.Typer(
    name="clipsort",
    help=(
        "Tag and sort photos with CLIP.\n\n"
        "Examples:\n\n"
        "  clipsort tag ~/Photos --labels labels.txt\n\n"
        "  clipsort sort ~/Inbox --labels labels.txt --dest ~/Sorted --dry-run\n\n"
        "  clipsort labels check labels.toml\n\n"
        "  clipsort learn ~/Examples -o mine.labels.json && clipsort eval ~/Checked --labels mine.labels.json\n\n"
        "Exit codes: 0 done, 1 error, 2 usage or label-file error, 3 finished but some files failed."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
labels_app = typer.Typer(help="Work with label files.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")
cache_app = typer.Typer(help="Inspect and tidy the embedding cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"clipsort {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    pass
