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

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator

#: Set in every process clipsort runs in, and sent to Ray workers with each task.
TELEMETRY_OFF = {"ORT_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
FORWARDED = tuple(TELEMETRY_OFF)
#: For a Ray cluster clipsort starts on this machine (never for one it joins).
RAY_OWN_CLUSTER_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # Ray finds "this node's address" by routing a datagram socket to 8.8.8.8; for a single-node
    # cluster (this switch's meaning on every platform) it takes the loopback address instead.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


def own_cluster_env() -> dict[str, str]:
    """The environment of a Ray cluster clipsort starts itself: :data:`RAY_OWN_CLUSTER_ENV`, and a
    token of its own for Ray's token authentication (kept in the environment its processes share:
    Ray would otherwise write one to ~/.ray/auth_token). The user's own Ray settings win."""
    env = {name: value for name, value in RAY_OWN_CLUSTER_ENV.items() if name not in os.environ}
    if not any(os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    return env


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


#: The proxy variables of HTTP clients (requests, aiohttp, gRPC read them).
_PROXY_NAMES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")
#: A proxy on loopback where nothing listens: a request sent through it is refused on this machine.
_NOWHERE = "http://127.0.0.1:9"
_LOCAL = "127.0.0.1,localhost,::1"


def outgoing_proxies() -> dict[str, str]:
    """The proxy settings of this process as they are (empty where unset): what the photos' storage
    is reached through, restored for the workers of a cluster :func:`cluster_processes_offline` started."""
    return {name: os.environ.get(name, "") for name in _PROXY_NAMES}


@contextlib.contextmanager
def cluster_processes_offline() -> Iterator[None]:
    """While Ray starts its own processes on this machine (the GCS, the raylet, the dashboard
    server): every HTTP request they would send beyond the machine goes to a proxy on loopback where
    nothing listens. Ray's dashboard server asks the cloud metadata services (169.254.169.254,
    metadata.google.internal, a DNS lookup) at start even with usage stats off; Ray's own traffic,
    on loopback, is not proxied. The driver's settings are restored at once, and the workers get
    the driver's (:func:`outgoing_proxies`)."""
    saved = outgoing_proxies()
    for name in _PROXY_NAMES:
        os.environ[name] = _LOCAL if name.lower() == "no_proxy" else _NOWHERE
    try:
        yield
    finally:
        for name, value in saved.items():
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)
