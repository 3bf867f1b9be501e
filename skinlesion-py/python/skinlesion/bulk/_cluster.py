"""Ray and pyarrow, imported on use (the optional extra), and joining a Ray cluster."""

from __future__ import annotations

import socket
from typing import Optional

# `import skinlesion` never needs them.
_RAY_HINT = "skinlesion.bulk needs Ray Data: pip install 'skinlesion[ray]'"


def imports():
    try:
        import pyarrow
        import ray
        import ray.data
    except ImportError as e:  # pragma: no cover - the extra is installed wherever this is tested
        raise ImportError(_RAY_HINT) from e
    return ray, pyarrow


def connect(address: Optional[str]) -> None:
    """Joins ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or starts a local Ray."""
    ray, _ = imports()
    if ray.is_initialized():
        return
    probe(address)
    try:
        ray.init(address=address, include_dashboard=False)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address or 'this machine'}: {e}") from e


def probe(address: Optional[str], timeout: float = 5.0) -> None:
    """Fails fast on a host:port that does not answer (Ray itself retries for minutes)."""
    if address in (None, "auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"a Ray address is auto, ray://HOST:PORT or HOST:PORT, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {e}") from e
