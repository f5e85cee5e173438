"""clipsort: tag and organise photos with CLIP.

The package is a library with a thin command-line interface on top. The stages
follow the data: :mod:`clipsort.discover` -> :mod:`clipsort.decode` ->
:mod:`clipsort.model` -> :mod:`clipsort.score` -> :mod:`clipsort.sidecar` /
:mod:`clipsort.mover`, tied together by :mod:`clipsort.pipeline`.
"""

__version__ = "0.1.0"
