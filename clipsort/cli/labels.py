"""``clipsort labels check``: what each label of a label file became."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clipsort.cli.app import labels_app
from clipsort.cli.options import ClipsortCommand


@labels_app.command("check", cls=ClipsortCommand)
def labels_check(
    file: Annotated[Path, typer.Argument(help="The label file to check (.txt, .toml, or made by 'clipsort learn').")],
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", "-t", min=0.0, max=1.0, help="Show thresholds as a run with this --threshold."),
    ] = None,
) -> None:
    """Check a label file and explain what each label became.

    Its prompts, folder, keywords, threshold and where the threshold comes from.

    Examples:

      clipsort labels check labels.txt

      clipsort labels check labels.toml --threshold 0.6

      clipsort labels check mine.labels.json
    """
    from clipsort.labels.label_file import load_labels
    from clipsort.labels.label_set import DEFAULT_MARGIN
    from clipsort.run.classifier import threshold_of

    label_set = load_labels(file)
    if label_set.model is not None:  # learned: its vectors must be of its model's size
        from clipsort.labels.label_set import check_dimension
        from clipsort.model.model_files import embed_dim
        from clipsort.model.model_spec import spec_of_display

        spec = spec_of_display(label_set.model.display)
        check_dimension(label_set, embed_dim(spec) if spec is not None else None, label_set.model.display)
    root = label_set.tag_root if label_set.tag_root is not None else "clipsort"
    for label in label_set.labels:
        value, source = threshold_of(label, label_set, threshold)
        where = f"line {label.line}; " if label.line else ""
        keywords = [label.leaf, "|".join((root, *label.path) if root else label.path)]
        if label.exclude:
            role = "excluded: takes photos, never written or sorted to"
        else:
            role = f"folder {'/'.join(label.folder_path)}/; keywords {', '.join(keywords)}"
        typer.echo(f"{label.name}  ({where}{role})")
        typer.echo(f"    threshold {value:g} ({source})")
        if label.aliases:
            typer.echo(f"    aliases {', '.join(label.aliases)}")
        if label.vector is not None:
            typer.echo(f"    learned classifier ({label.learned}); its name's prompts were the starting point:")
        else:
            typer.echo(f"    prompts ({'own' if label.custom_prompts else 'templates'}):")
        for prompt in label.prompts:
            typer.echo(f"      {prompt}")
    margin = label_set.margin if label_set.margin is not None else DEFAULT_MARGIN
    extra = f"; learned with {label_set.model.display}" if label_set.model is not None else ""
    typer.echo(f"{len(label_set)} labels OK ({label_set.kind} file; sort margin {margin:g}{extra})", err=True)
