"""Changes to people's files: sidecars (XMP and JSON, through a small XMP DOM), moving photos with
their companions (:mod:`.mover`, journaled), placing a file without replacing another
(:mod:`.placing`), putting an interrupted run back (:mod:`.recovery`), and the folders
``--pattern`` builds.

May import: store, labels, photos.
"""
