"""``tag --into photo|both``: keywords written into the photo file itself where they can go, and
into its sidecar where they cannot (RAW files, formats this installation cannot write, photos
clipsort may not replace whole), each reason said once in the summary.

A photo whose keywords are already what this run would write is not rewritten, and the record
(:class:`clipsort.store.sidecar_record.SidecarRecord`, keyed by the photo) makes a re-run cost a
stat. After a write the cached vectors follow the photo to its new size and time
(:meth:`clipsort.store.cache.EmbeddingCache.retouched`): its picture was checked the same, so a
nightly run neither decodes nor embeds it again.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from clipsort.photos.exif import embedded_keywords
from clipsort.photos.location import file_fingerprint
from clipsort.store.cache import EmbeddingCache
from clipsort.store.journal import Journal
from clipsort.store.sidecar_record import SidecarRecord, digest_of
from clipsort.writes.exiftool import ExifTool, ExifToolError
from clipsort.writes.in_photo import NotRewritable, PhotoWriter
from clipsort.writes.sidecar import Keywords, keywords_in


class InPhotoTagger:
    """One run's writer of keywords into photos (one ExifTool process), and what fell back."""

    def __init__(
        self,
        tag_root: str,
        model_name: str,
        mode: str,
        record: SidecarRecord,
        cache: EmbeddingCache | None,
        dng: bool,
        roots: Sequence[Path] = (),
    ) -> None:
        self.tag_root = tag_root
        self.model_name = model_name
        self.append = mode == "append"
        self.record = record
        self.cache = cache
        #: Photos tagged in their sidecar instead, by reason.
        self.fell_back: Counter[str] = Counter()
        #: Photos left alone: they already hold this run's keywords.
        self.unchanged = 0
        self.written = 0
        self._roots = list(roots)
        #: The run's journal (``undo``, ``history``), made at the first photo rewritten.
        self.journal: Journal | None = None
        self._exiftool: ExifTool | None = None
        self._writer: PhotoWriter | None = None
        self._missing: str | None = None
        try:
            self._exiftool = ExifTool()
            self._writer = PhotoWriter(self._exiftool, dng=dng)
        except ExifToolError as exc:
            self._missing = f"{exc} (install exiftool to tag inside photos: docs/sidecars.md)"

    def refusal(self, photo: Path) -> str | None:
        """Why ``photo``'s keywords cannot go inside it (they go to its sidecar); None when they can."""
        if self._writer is None:
            return self._missing
        return self._writer.cannot_write(photo)

    def holds_keywords(self, photo: Path) -> bool:
        """Whether clipsort's keywords are inside ``photo`` (its XMP's record of them)."""
        embedded = embedded_keywords(photo)
        try:
            return embedded.xmp is not None and any(keywords_in(embedded.xmp)["clipsort"].values())
        except ValueError:
            return False

    def write(self, photo: Path, keywords: Keywords, digest: str, dry_run: bool) -> bool:
        """Write ``keywords`` into ``photo``. False: they cannot go there (recorded in
        :attr:`fell_back`, for the sidecar to take them). Other failures raise InPhotoError."""
        assert self._writer is not None
        digest = digest_of("in-photo", digest)
        if self.record.unchanged(photo, digest):
            self.unchanged += 1
            return True
        if dry_run:
            return True
        try:
            before = os.stat(photo)
            wrote = self._writer.write(photo, keywords, self.tag_root, self.model_name, self.append, self._journal)
        except NotRewritable as refused:
            self.fell_back[refused.reason] += 1
            return False
        if wrote:
            self.written += 1
            after = os.stat(photo)
            if self.cache is not None:
                fingerprint = file_fingerprint(photo, after.st_size)
                self.cache.retouched(
                    photo, (before.st_size, before.st_mtime_ns), (after.st_size, after.st_mtime_ns, fingerprint)
                )
        else:
            self.unchanged += 1
        self.record.wrote(photo, digest, lambda: bool(keywords.subjects))
        return True

    def _journal(self) -> Journal:
        """The run's journal, made when the first photo is about to be replaced."""
        if self.journal is None:
            self.journal = Journal.create("tag", self._roots, None, {"into": "photo"})
        return self.journal

    def notes(self) -> list[str]:
        """The summary's lines: photos tagged in sidecars instead, one line per reason."""
        lines = []
        for reason, count in sorted(self.fell_back.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"{count} photo(s) tagged in their sidecar instead of inside the file: {reason}")
        return lines

    def close(self, summary: dict[str, object] | None = None) -> None:
        if self.journal is not None:
            self.journal.end({"rewritten": self.written, **(summary or {})})
            self.journal.close()
        if self._writer is not None:
            self._writer.close()
        if self._exiftool is not None:
            self._exiftool.close()
