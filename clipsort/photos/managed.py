"""Folders that another application manages: photo libraries whose originals live in a bundle
or storage folder of the application's own, where moving a file or writing a sidecar breaks
the application's catalogue (Apple Photos then shows originals missing).

``tag`` and ``sort`` never enter them; read-only commands do when asked (``--include-managed``).
Each is recognised by its name or by a file its application keeps in it (docs/security.md):

* macOS bundles, by extension: Apple Photos (``.photoslibrary``), iPhoto (``.photolibrary``,
  ``.migratedphotolibrary`` once Photos has taken it over), Aperture (``.aplibrary``),
  Lightroom, cloud-based (``.lrlibrary``), Lightroom Classic's previews and Smart Previews
  (``.lrdata``, which hold DNG proxies), Capture One catalogues (``.cocatalog``), iMovie
  (``.imovielibrary``), Final Cut Pro (``.fcpbundle``); Photo Booth's ``Photo Booth Library``.
* An Apple Photos library renamed or copied off a Mac: ``database/Photos.sqlite`` beside
  ``originals/`` (``Masters/`` in older ones).
* Server storage, by the marker file each server writes: Immich (``.immich`` in each of its
  storage folders), PhotoPrism (``.ppstorage`` in its storage folder), PhotoStructure (a
  ``.photostructure`` folder at its library's root), Nextcloud (``.ocdata`` in its data folder).
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

#: Folder name endings (lower case) of application bundles that hold photos, and whose they are.
BUNDLES = {
    ".photoslibrary": "an Apple Photos library",
    ".photolibrary": "an iPhoto library",
    ".migratedphotolibrary": "an iPhoto library taken over by Apple Photos",
    ".aplibrary": "an Aperture library",
    ".lrlibrary": "a Lightroom library",
    ".lrdata": "Lightroom Classic previews",
    ".cocatalog": "a Capture One catalogue",
    ".imovielibrary": "an iMovie library",
    ".fcpbundle": "a Final Cut Pro library",
}
NAMES = {"photo booth library": "a Photo Booth library"}
#: Files or folders an application keeps in the folders it manages.
MARKERS = {
    ".immich": "Immich's storage",
    ".ppstorage": "PhotoPrism's storage",
    ".photostructure": "a PhotoStructure library",
    ".ocdata": "Nextcloud's data folder",
}


def by_name(name: str) -> str | None:
    """Whose a folder named ``name`` is, by its name alone; None for an ordinary name."""
    lower = name.lower()
    dot = lower.rfind(".")
    if dot > 0 and lower[dot:] in BUNDLES:
        return BUNDLES[lower[dot:]]
    return NAMES.get(lower)


def by_content(folder: Path | str, names: Collection[str]) -> str | None:
    """Whose ``folder`` is, judged by the ``names`` it holds (its listing); None for an ordinary folder."""
    for marker, whose in MARKERS.items():
        if marker in names:
            return whose
    if "database" in names and ("originals" in names or "Masters" in names):
        if os.path.isfile(os.path.join(folder, "database", "Photos.sqlite")):
            return "an Apple Photos library"
    return None


def whose(folder: Path | str) -> str | None:
    """Whose ``folder`` is (by name, then by its content), or None."""
    found = by_name(os.path.basename(os.path.normpath(folder)))
    if found:
        return found
    try:
        return by_content(folder, set(os.listdir(folder)))
    except OSError:
        return None


def managed_ancestor(path: Path | str) -> tuple[Path, str] | None:
    """The nearest folder at or above ``path`` (links resolved) that an application manages, and
    whose it is; None when there is none. Checked for the paths a user names, which the walk
    enters without passing their parents."""
    try:
        real = Path(os.path.realpath(path))
    except OSError:
        return None
    folder = real if real.is_dir() else real.parent
    for candidate in (folder, *folder.parents):
        found = by_name(candidate.name) if candidate.name else None
        if found is None:
            for marker, owner in MARKERS.items():
                if os.path.lexists(candidate / marker):
                    found = owner
                    break
        if found is None and (candidate / "database" / "Photos.sqlite").is_file():
            present = {n for n in ("originals", "Masters") if (candidate / n).exists()}
            found = by_content(candidate, {"database", *present})
        if found:
            return candidate, found
    return None


def left_out_reason(whose_it_is: str) -> str:
    return f"{whose_it_is}, managed by its application: clipsort does not write or move anything inside it"
