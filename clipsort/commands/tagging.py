"""``tag``: every label a photo passes, written to its sidecar (and its RAW partner's).

A record in the cache (:mod:`clipsort.store.sidecar_record`) of what was last written to
each sidecar lets a re-run skip, at the cost of a stat, every sidecar whose decision
and file are unchanged; a sidecar someone else changed since is merged again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from clipsort.commands.tag_in_photo import InPhotoTagger
from clipsort.errors import FileFailure, SidecarError, UsageError
from clipsort.labels import decide
from clipsort.labels.label_set import Label, LabelSet
from clipsort.labels.names import control_problem
from clipsort.model.embed import Embedder
from clipsort.photos.discover import ImageRef, SideFiles
from clipsort.photos.exif import embedded_keywords
from clipsort.photos.location import require_local
from clipsort.run.classifier import decisions_when_needed
from clipsort.run.events import Events, RunOptions, SilentEvents, wants_details
from clipsort.run.pipeline import explained_of, fail_unhandled_partners, photos_to_score, record, score_all, scores_of
from clipsort.run.report import PhotoResult, Report
from clipsort.store.sidecar_record import SidecarRecord, digest_of
from clipsort.writes.recovery import recover
from clipsort.writes.sidecar import (
    Keywords,
    carried_keywords,
    holds_clipsort_keywords,
    json_path,
    json_text,
    keywords_for,
    sidecar_name,
    write_json,
    write_xmp,
    xmp_path,
)


@dataclass(frozen=True)
class TagOptions:
    #: None: each label's own, else the label file's, else the built-in default (docs/scoring.md).
    threshold: float | None = None
    #: Keep at most this many labels per photo; None: no limit.
    top_k: int | None = None
    sidecar: str = "xmp"  #: xmp or json
    xmp_name: str = "full"  #: full (photo.jpg.xmp) or stem (photo.xmp)
    #: None: the label file's tag_root, else "clipsort".
    tag_root: str | None = None
    dry_run: bool = False
    #: replace: clipsort's earlier keywords give way to this run's; append: this run's are added to them.
    mode: str = "replace"
    #: Leave photos whose sidecar already holds clipsort keywords (not even embedded).
    only_untagged: bool = False
    #: Where keywords go: "sidecar", "photo" (inside the file, the sidecar where they cannot) or "both".
    into: str = "sidecar"
    #: With ``into`` photo or both: DNG files too (other RAW files never).
    into_dng: bool = False


def tag_root_of(labels: LabelSet, options: TagOptions) -> str:
    """The parent of the hierarchical keywords: ``--tag-root``, else the label file's, else ``clipsort``;
    refused when it holds control characters (it is written into every sidecar)."""
    tag_root = options.tag_root if options.tag_root is not None else (labels.tag_root or "clipsort")
    problem = control_problem(tag_root, "the tag root")
    if problem:
        raise UsageError(problem)
    return tag_root


def run_tag(
    roots: Sequence[Path],
    labels: LabelSet,
    embedder: Embedder,
    options: TagOptions,
    run: RunOptions = RunOptions(),
    events: Events | None = None,
) -> Report:
    """Score every photo under ``roots`` and write the labels it passes to its sidecar (multi-label)."""
    events = events or SilentEvents()
    run = replace(run, include_managed=False)  # never writes or moves inside another application's library
    report = Report("tag", dry_run=options.dry_run)
    report.written_to = _written_to(options)
    tag_root = tag_root_of(labels, options)
    if options.into != "sidecar":
        require_local(roots, f"--into {options.into} rewrites local photos only (use --into sidecar for URLs)")
    decisions = decisions_when_needed(embedder, labels, options.threshold)
    side_files = SideFiles((".xmp", ".clipsort.json"))
    details = wants_details(events)  # scores and verdicts: only for --json, --explain
    json_sidecars = options.sidecar == "json"  # they hold the scores
    writer = _Writer(
        options,
        labels,
        embedder.name,
        tag_root,
        SidecarRecord(embedder.cache),
        side_files.stats,
        want_paths=details or options.dry_run,
    )
    in_photo = None
    if options.into != "sidecar":
        if not options.dry_run:
            recover(events.warned)  # an interrupted sort or tag run, finished or rolled back first
        in_photo = InPhotoTagger(
            tag_root, embedder.name, options.mode, writer.record, embedder.cache, options.into_dng, roots
        )
    refs, partners = photos_to_score(roots, run, report, events, side_files)
    if options.only_untagged:
        refs = _untagged(refs, partners, writer, report, events, in_photo)
    handled: set[Path] = set()
    try:
        for ref, row, _ in score_all(refs, decisions, embedder, run, report, events):
            if details:
                kept_idx, judgements = decide.multi_label(row, decisions.thresholds, decisions.exclude, options.top_k)
                explained = explained_of(decisions, judgements)
            else:
                kept_idx = decide.kept_labels(row, decisions.thresholds, decisions.exclude, options.top_k)
                explained = {}
            kept = [labels.labels[i] for i in kept_idx]
            names = tuple(label.name for label in kept)
            scores = scores_of(labels, row) if details or json_sidecars else {}
            photos: list[tuple[Path, str | None]] = [(ref.path, None)]
            shared: set[Path] | None = None
            raws = partners.get(ref.path) if partners else None  # most libraries have no pairs: no hashing
            if raws:
                handled.add(ref.path)
                photos += [(raw.path, f"labels of {ref.path.name}") for raw in raws]
                shared = set()  # the pair's photo.xmp (--xmp-name stem) is written once
            for photo, note in photos:
                try:
                    sidecar = None
                    if in_photo is None or not in_photo_written(in_photo, writer, photo, kept, options):
                        sidecar = writer.write(photo, ref.path, kept, scores, shared)
                    elif options.into == "both":
                        sidecar = writer.write(photo, ref.path, kept, scores, shared)
                except FileFailure as failure:
                    report.fail(failure)
                    events.failed(failure)
                else:
                    result = PhotoResult(
                        photo,
                        scores,
                        names,
                        "tagged" if kept else "untagged",
                        sidecar=sidecar,
                        dry_run=options.dry_run,
                        explained=explained,
                        note=note,
                    )
                    record(report, events, result)
                events.advanced(1)
        fail_unhandled_partners(partners, handled, report, events)
    finally:
        writer.record.flush()
        if in_photo is not None:
            in_photo.close({"failed": len(report.failures), "fatal": report.fatal})
            report.journal = in_photo.journal.path if in_photo.journal is not None else None
    report.unchanged = writer.unchanged
    if in_photo is not None:
        report.unchanged_in_photos = in_photo.unchanged
        report.notes += in_photo.notes()
    report.finish()
    return report


def in_photo_written(
    in_photo: InPhotoTagger, writer: _Writer, photo: Path, kept: Sequence[Label], options: TagOptions
) -> bool:
    """Write ``photo``'s keywords inside it; False when they cannot go there (its sidecar takes them)."""
    reason = in_photo.refusal(photo)
    if reason is not None:
        in_photo.fell_back[reason] += 1
        return False
    keywords, digest = writer._keywords(tuple(label.name for label in kept), kept)
    return in_photo.write(photo, keywords, digest, options.dry_run)


def _untagged(
    refs: list[ImageRef],
    partners: dict[Path, list[ImageRef]],
    writer: _Writer,
    report: Report,
    events: Events,
    in_photo: InPhotoTagger | None = None,
) -> list[ImageRef]:
    """``--only-untagged``: the photos whose sidecar (or, with ``--into photo|both``, the photo
    itself) holds no clipsort keywords; the others are reported."""
    keep = []
    for ref in refs:
        sidecar = writer.sidecar_path(ref.path)
        inside = in_photo is not None and in_photo.refusal(ref.path) is None and in_photo.holds_keywords(ref.path)
        if inside or writer.already_tagged(sidecar):
            for photo in [ref.path, *(p.path for p in partners.get(ref.path, []))]:
                result = PhotoResult(photo, {}, (), "already-tagged", sidecar=sidecar, dry_run=writer.options.dry_run)
                record(report, events, result)
                events.advanced(1)
        else:
            keep.append(ref)
    return keep


class _Writer:
    """Writes one photo's sidecar, unless the record shows it already holds exactly that."""

    def __init__(
        self,
        options: TagOptions,
        labels: LabelSet,
        model_name: str,
        tag_root: str,
        sidecars: SidecarRecord,
        seen: dict[str, tuple[int, int]],
        want_paths: bool = True,
    ) -> None:
        self.options = options
        self.labels = labels
        self.model_name = model_name
        self.tag_root = tag_root
        self.record = sidecars
        #: (size, mtime_ns) of the sidecars the walk found, by path.
        self.seen = seen
        #: False: a sidecar left unchanged is not named in the result (nobody reads it).
        self.want_paths = want_paths
        #: With --xmp-name stem, photo.jpg and photo.png would share photo.xmp: the first one keeps it.
        self.owner_of: dict[Path, Path] = {}
        #: Sidecars left alone because the record shows them unchanged.
        self.unchanged = 0
        self._digests: dict[tuple[str, ...], tuple[Keywords, str]] = {}

    def _keywords(self, names: tuple[str, ...], kept: Sequence[Label]) -> tuple[Keywords, str]:
        """The keywords of a set of kept labels, and the digest of writing them (the same for every
        photo that keeps those labels: computed once per set)."""
        known = self._digests.get(names)
        if known is None:
            keywords = keywords_for(kept, self.tag_root)
            digest = digest_of("xmp", keywords, self.tag_root, self.model_name, self.options.mode)
            known = self._digests[names] = (keywords, digest)
        return known

    def _digest(self, photo: Path, kept: Sequence[Label], scores: dict[str, float]) -> tuple[Keywords | None, str]:
        """The keywords to write (XMP; None for JSON) and the digest of what the write puts in the sidecar."""
        names = tuple(label.name for label in kept)
        if self.options.sidecar == "json":
            return None, digest_of("json", json_text(photo, self.model_name, scores, list(names)))
        return self._keywords(names, kept)

    def sidecar_path(self, photo: Path) -> Path:
        return json_path(photo) if self.options.sidecar == "json" else xmp_path(photo, self.options.xmp_name)

    def already_tagged(self, sidecar: Path) -> bool:
        known = self.record.has_keywords(sidecar)
        return known if known is not None else holds_clipsort_keywords(sidecar)

    def write(
        self,
        photo: Path,
        primary: Path,
        kept: Sequence[Label],
        scores: dict[str, float],
        shared: set[Path] | None = None,
    ) -> Path | None:
        """Write ``photo``'s sidecar (``primary``: the photo whose labels these are). Returns its path or None.

        ``shared``: the sidecars already written for this photo's pair (None: no pair).
        """
        options = self.options
        name = sidecar_name(photo, options.sidecar, options.xmp_name)
        path: Path | None = None  # made only when needed: a re-run leaves most sidecars alone
        if options.sidecar == "xmp" and options.xmp_name == "stem":
            path = type(photo)(name)
            owner = self.owner_of.setdefault(path, primary)
            if owner != primary:
                raise SidecarError(
                    photo,
                    f"its sidecar {path.name} belongs to {owner.name} (--xmp-name stem);"
                    " not tagged: use --xmp-name full to give each photo its own",
                )
        if shared is not None:
            path = path or type(photo)(name)
            if path in shared:
                return path
            shared.add(path)
        keywords, digest = self._digest(photo, kept, scores)
        if self.record.unchanged(name, digest, self.seen.get(name)):
            self.unchanged += 1
            return path or (type(photo)(name) if self.want_paths else None)
        path = path or type(photo)(name)
        names = [label.name for label in kept]
        append = options.mode == "append"
        if options.sidecar == "json":
            if options.dry_run:
                return path
            write_json(photo, self.model_name, scores, names)
        else:
            if not kept and not path.exists():
                return None  # nothing to write, and no earlier clipsort keywords to remove
            if options.dry_run:
                return path
            assert keywords is not None
            carried = carried_keywords(embedded_keywords(photo), self.tag_root)
            write_xmp(photo, keywords, self.tag_root, self.model_name, options.xmp_name, append, carried)
        written = path
        self.record.wrote(written, digest, lambda: bool(kept) or (append and holds_clipsort_keywords(written)))
        return path


def _written_to(options: TagOptions) -> str:
    """Where this run's keywords go, for its summary."""
    name = "photo.xmp" if options.sidecar == "xmp" and options.xmp_name == "stem" else f"photo.jpg.{options.sidecar}"
    if options.sidecar == "json":
        name = "photo.jpg.clipsort.json"
    beside = f"sidecars beside each photo ({name})"
    verb = "would be written" if options.dry_run else "written"
    if options.into == "photo":
        return f"keywords {verb} inside the photos (a sidecar where a photo cannot hold them)"
    if options.into == "both":
        return f"keywords {verb} inside the photos and in {beside}"
    return f"keywords {verb} in {beside}"
