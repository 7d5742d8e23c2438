"""What this installation runs: torch, the device the face models use, and the configured face pipeline.

`immray info` prints it so an operator can tell at a glance whether the models run on a GPU (and which), how
many CPU threads torch may use, and which detector and embedder are configured.
"""

from __future__ import annotations

import torch

from immray import __version__
from immray.faces import AnalyzerConfig, get_analyzer


def runtime_info(config: AnalyzerConfig) -> dict[str, object]:
    """Facts about torch and the pipeline ``config`` selects (loads the models once)."""
    analyzer = get_analyzer(config)
    device = analyzer.device
    return {
        "immray": __version__,
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "detector": config.detector,
        "embedder": f"{analyzer.embedder.name} ({analyzer.embedder.dimension}-d)",
        "detect_max_side": config.detect_max_side,
        "min_face_px": config.min_face_px,
    }
