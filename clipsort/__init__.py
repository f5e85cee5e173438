"""clipsort: tag and organise photos with CLIP.

A library with a thin command-line interface on top. The code follows a photo's path, one
sub-package per stage (docs/architecture.md has the picture):

* :mod:`clipsort.photos`: finding and reading photos, and where each lives
* :mod:`clipsort.labels`: label files, prompts, decisions (pure numpy)
* :mod:`clipsort.store`: the embedding cache, the sidecar record, the journals
* :mod:`clipsort.model`: the model, its runtimes, and photos and prompts made vectors
* :mod:`clipsort.writes`: sidecars, moves, recovery: the only code that changes people's files
* :mod:`clipsort.run`: the pipeline and its engines, events and the report
* :mod:`clipsort.commands`: what each command does
* :mod:`clipsort.cli`: the ``clipsort`` command, and :mod:`clipsort.console`, how it shows things

Imports run one way, down this list: each sub-package's ``__init__`` names what it may import
(tests/test_layout.py holds every module to it). At the top, :mod:`clipsort.errors`,
:mod:`clipsort.settings`, :mod:`clipsort.safe_files` and :mod:`clipsort.privacy` are the base
that every stage may use; they import no sub-package. :mod:`clipsort.console` may import any
stage and is imported by the CLI only.
"""

from clipsort.privacy import telemetry_off

__version__ = "0.1.0"

# Before any dependency loads, in every process that imports clipsort (the command, Ray workers):
# nothing leaves the machine unasked (clipsort.privacy).
telemetry_off()
