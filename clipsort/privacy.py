"""Nothing leaves the machine unasked: dependencies' telemetry is switched off before any of them
loads, in every process clipsort starts, and the model hub is not asked about a model once it is
in the cache.

* ONNX Runtime's PyPI builds start Microsoft's telemetry when imported (a device id and an event
  queue under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``, uploaded later):
  ``ORT_DISABLE_TELEMETRY=1`` prevents all of it (its Privacy.md).
* huggingface_hub and transformers send usage telemetry with some calls:
  ``HF_HUB_DISABLE_TELEMETRY=1``.
* A model that is cached is loaded with the hub in offline mode (:func:`hub_offline`): open_clip,
  transformers and huggingface_hub then never look up an update or a tokenizer online.
* A Ray cluster clipsort starts itself does not collect usage stats
  (:data:`RAY_OWN_CLUSTER_ENV`); a cluster the user runs keeps its own setting.

:func:`telemetry_off` runs when the ``clipsort`` package is imported: before anything else of
clipsort, in the command and in every Ray worker that runs clipsort's code. The variables also
travel with the Ray engine's tasks (:data:`FORWARDED`).
"""

from __future__ import annotations

import os
import sys

#: Set in every process clipsort runs in, and sent to Ray workers with each task.
TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
FORWARDED = tuple(TELEMETRY_OFF)
#: For a Ray cluster clipsort starts on this machine (never for one it joins).
RAY_OWN_CLUSTER_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def telemetry_off() -> None:
    """Switch off the telemetry of clipsort's dependencies for this process and its children."""
    os.environ.update(TELEMETRY_OFF)


def hub_offline() -> None:
    """No request to the model hub from now on (the model is cached): for libraries that read the
    setting when imported, and for huggingface_hub if it was imported already (it reads its
    ``constants.HF_HUB_OFFLINE`` at each call)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True  # type: ignore[attr-defined]
