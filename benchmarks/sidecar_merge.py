"""Merging into large XMP sidecars: the time per megabyte must stay flat as sidecars grow.

    python benchmarks/sidecar_merge.py [--repeat 3]

Builds sidecars of several sizes in three shapes (many keywords in dc:subject; many records of
clipsort's own in one Description; a long darktable history) and times
:func:`clipsort.writes.sidecar.merge_xmp` on each (best of ``--repeat``). Prints seconds, seconds per MB,
and for each shape the ratio of the largest sidecar's time per MB to the smallest's: about 1 when
merging is linear in the size (it was about 3 for 4.8 MB of keywords when each removal searched
its parent's children). Sizes stay under the 16 MiB a sidecar may be.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipsort.writes.sidecar import Keywords, merge_xmp  # noqa: E402

HEAD = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
    '  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
    ' xmlns:darktable="http://darktable.sf.net/" xmlns:clipsort="http://ns.clipsort.org/xmp/1.0/">\n'
)
TAIL = "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"


def sidecar(shape: str, n: int) -> str:
    if shape == "keywords":
        items = "".join(f"     <rdf:li>keyword {i}</rdf:li>\n" for i in range(n))
        body = f"   <dc:subject>\n    <rdf:Bag>\n{items}    </rdf:Bag>\n   </dc:subject>\n"
    elif shape == "records":
        body = "".join(
            f"   <clipsort:addedSubject><rdf:Bag><rdf:li>k{i}</rdf:li></rdf:Bag></clipsort:addedSubject>\n"
            for i in range(n)
        )
    else:
        body = (
            "   <darktable:history>\n    <rdf:Seq>\n"
            + "".join(f'     <rdf:li darktable:operation="exposure" darktable:params="{i:040d}"/>\n' for i in range(n))
            + "    </rdf:Seq>\n   </darktable:history>\n"
        )
    return HEAD + body + TAIL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    keywords = Keywords(("red",), ("clipsort|red",), ("clipsort/red",))
    print(f"{'shape':<9} {'items':>7} {'MB':>6} {'seconds':>8} {'s/MB':>6}")
    for shape in ("keywords", "records", "history"):
        per_mb = []
        for n in (20_000, 80_000, 160_000):
            text = sidecar(shape, n)
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                merge_xmp(text, keywords, "clipsort", "bench")
                best = min(best, time.perf_counter() - start)
            size = len(text.encode()) / 1e6
            per_mb.append(best / size)
            print(f"{shape:<9} {n:>7} {size:>6.1f} {best:>8.2f} {best / size:>6.2f}")
        print(f"{shape:<9} time per MB, largest / smallest: {per_mb[-1] / per_mb[0]:.2f}")


if __name__ == "__main__":
    main()
