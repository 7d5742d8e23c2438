"""Reaching Ray: start a local Ray for ``immray serve`` on the embedded default, or join a cluster.

A local Ray gets the dashboard on loopback (the README shows its address) and Ray's metrics export; its
head never takes port 6379 (``ray.init`` picks free ports), which Redis may own on the same machine.
"""

from __future__ import annotations

import os

import ray

from immray.settings import Settings

SERVE_NAMESPACE = "serve"


def connect(settings: Settings) -> tuple[bool, str | None]:
    """Connect this process to Ray; returns (whether this call started a local Ray, the dashboard URL)."""
    if ray.is_initialized():
        return False, None
    address = settings.ray_address
    if address:
        try:
            context = ray.init(address=address, namespace=SERVE_NAMESPACE, logging_level="warning")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RuntimeError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        return False, _dashboard(context)
    context = ray.init(
        num_cpus=settings.ray_num_cpus or os.cpu_count() or 1,
        namespace=SERVE_NAMESPACE,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        logging_level="warning",
    )
    return True, _dashboard(context)


def _dashboard(context) -> str | None:
    url = getattr(context, "dashboard_url", None)
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"
