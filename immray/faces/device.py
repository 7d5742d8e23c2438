"""Where the face models run: ``auto`` takes the GPU when this process sees one, else the CPU.

On Ray, a replica given ``num_gpus: 0`` sees no GPU (Ray hides them from it), so ``auto`` follows the Serve
config; ``cpu`` or ``cuda`` force it. torch's CPU threads are bounded by the cores the caller was given: more
threads than cores only fight the other replicas for them.
"""

from __future__ import annotations

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a setting; ValueError for ``cuda`` where no GPU is visible."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this process sees no GPU")
    return torch.device(name)


def limit_cpu_threads(threads: int) -> None:
    """torch's intra-op threads for this process (at least one). Inter-op threads stay at torch's default:
    they are only set before the first parallel call, and the models run one op after another."""
    torch.set_num_threads(max(1, int(threads)))
