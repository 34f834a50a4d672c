"""Pretrained backbone weights without a network: fail at once, in one line, with the way out.

``model.pretrained: true`` (the packaged ``nyud_*`` / ``pascal_*`` configs) makes timm or
transformers fetch the backbone weights from the Hugging Face Hub, or read them from its local
cache. Offline, huggingface_hub retries every request with back-off (about a minute) and then
fails with a long traceback. :func:`pretrained_weights` first checks whether the Hub can be
reached (one TCP connection, :data:`PROBE_TIMEOUT_S`); if not, it switches huggingface_hub to
offline mode, so cached weights load at once and missing ones fail at once, with an
:class:`~mtcp.errors.MtcpError` that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import huggingface_hub.constants as hub

from mtcp.errors import MtcpError

PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when the Hugging Face Hub endpoint accepts a TCP connection (or a proxy is set)."""
    if hub.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; a direct probe would say nothing
    url = urlparse(hub.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def pretrained_weights(model_name: str, pretrained: bool) -> Iterator[None]:
    """Around building the model ``model_name``: offline mode when the Hub is unreachable.

    Raises:
        MtcpError: the weights are neither reachable nor cached; the message names the model
            and ``model.pretrained=false``.
    """
    if not pretrained:
        yield
        return
    offline = not hub_reachable()
    previous = hub.HF_HUB_OFFLINE
    hub.HF_HUB_OFFLINE = previous or offline
    try:
        yield
    except MtcpError:
        raise
    except Exception as err:  # timm / transformers / huggingface_hub errors of a failed fetch
        if not offline:
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise MtcpError(
            f"model.pretrained=true: the pretrained weights of {model_name} could not be "
            f"fetched: the Hugging Face Hub ({hub.ENDPOINT}) cannot be reached and they are not "
            f"in the local cache ({hub.HF_HUB_CACHE}). Connect once to download them, or set "
            f"model.pretrained=false to train from scratch. ({type(err).__name__}: {first})"
        ) from None
    finally:
        hub.HF_HUB_OFFLINE = previous
