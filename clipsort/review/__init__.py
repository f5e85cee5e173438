"""Review pages: what a run decided, as one HTML page of upright thumbnails that opens from disk
(``--review PAGE.html``), with the sort plan a person can correct there and carry out with
``sort --plan`` (docs/review.md). Made from a run's results after it: nothing here decides or moves.

May import: run, writes, labels, photos.
"""
