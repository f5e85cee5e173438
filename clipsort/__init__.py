"""clipsort: tag and organise photos with CLIP.

The package is a library with a thin command-line interface on top. The stages
follow the data: :mod:`clipsort.discover` -> :mod:`clipsort.decode` ->
:mod:`clipsort.model` -> :mod:`clipsort.score` -> :mod:`clipsort.sidecar` /
:mod:`clipsort.mover`, tied together by :mod:`clipsort.pipeline`.
"""

from clipsort.privacy import telemetry_off

__version__ = "0.1.0"

# Before any dependency loads, in every process that imports clipsort (the command, Ray workers):
# nothing leaves the machine unasked (clipsort.privacy).
telemetry_off()
