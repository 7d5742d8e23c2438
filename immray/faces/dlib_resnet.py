"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) as a torch module.

The network is dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``: a 7x7/2 stem convolution, a 3x3/2
max pool, 14 residual blocks of two 3x3 convolutions (3 blocks at 32 channels, 4 at 64, 3 at 128, 3 at 256,
1 at 256; the first block of every level after the first halves the resolution), the average over all
positions, and a 256 -> 128 fully connected layer without bias: 29 convolutions in all. Batch normalisation
was folded into per-channel ``affine`` layers when dlib saved it (here folded further into the convolutions).
Two dlib details matter for exact descriptors:
- strided convolutions and pools have no padding (dlib pads only stride-1 layers by default);
- a down-sampling block adds its input, averaged 2x2/2, to its output; where their shapes differ (more
  channels in the output; 3x3 against 4x4 at the first 256-channel level) dlib's ``add_prev`` adds them as
  if the smaller one were zero-padded at the end, and the sum takes the larger shape.

Weights: read from ``dlib_face_recognition_resnet_model_v1.dat`` as the ``face_recognition_models`` package
(Adam Geitgey; MIT licence for the package, whose metadata says the models "are licensed in the public
domain") installs it. Davis King, who trained the model, released it into the public domain (dlib-models
README: "anyone can do whatever they want with these model files as I've released them into the public
domain"). ``immray.faces.dlib_dat`` reads the file at load time (~0.3 s), so no converted copy is stored or
cached anywhere: the conversion is this code, run on every load.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from immray.faces.dlib_dat import DlibFormatError, DlibLayer, DlibNetwork, read_network
from immray.faces.shipped import face_recognition_model

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150


def model_path() -> Path:
    """The .dat inside the installed ``face_recognition_models`` package."""
    return face_recognition_model(MODEL_FILE)


class _Conv(nn.Conv2d):
    def __init__(self, layer: DlibLayer) -> None:
        weight = np.asarray(layer.fields["weight"])
        out_channels, in_channels, kh, kw = weight.shape
        super().__init__(
            in_channels,
            out_channels,
            (kh, kw),
            stride=layer.fields["stride"],  # type: ignore[arg-type]
            padding=layer.fields["padding"],  # type: ignore[arg-type]
            bias=layer.fields["bias"] is not None,
        )
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(weight))
            if self.bias is not None:
                self.bias.copy_(torch.from_numpy(np.asarray(layer.fields["bias"])))


def _conv_affine(conv: DlibLayer, affine: DlibLayer) -> nn.Conv2d:
    """A convolution with the following per-channel affine folded in: (w*x + b)*g + a."""
    module = _Conv(conv)
    gamma = torch.from_numpy(np.asarray(affine.fields["gamma"]))
    beta = torch.from_numpy(np.asarray(affine.fields["beta"]))
    if gamma.numel() != module.out_channels or affine.fields["mode"] != 0:
        raise DlibFormatError("an affine layer does not match the convolution before it")
    with torch.no_grad():
        bias = module.bias if module.bias is not None else torch.zeros(module.out_channels)
        module.weight.mul_(gamma.view(-1, 1, 1, 1))
        module.bias = nn.Parameter(bias * gamma + beta)
    return module


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum takes the larger size of each dimension; the smaller tensor counts as
    zero-padded at the end."""
    if a.shape == b.shape:
        return a + b
    size = [max(x, y) for x, y in zip(a.shape, b.shape, strict=True)]
    out = a.new_zeros(size)
    out[:, : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[:, : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out


class _Residual(nn.Module):
    """relu(block(x) + x), or with ``down``: relu(block(x) + avg_pool_2x2(x)), dlib's shapes rules."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, down: bool) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.down = down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(_add_padded(y, shortcut))


class DlibFaceResNet(nn.Module):
    """chips (n, 3, 150, 150) float RGB in 0-255 -> (n, 128) descriptors, as dlib computes them."""

    def __init__(self, network: DlibNetwork) -> None:
        super().__init__()
        if network.input.fields.get("rows") != CHIP_SIZE or network.input.fields.get("cols") != CHIP_SIZE:
            raise DlibFormatError("the network does not take 150x150 chips")
        mean = torch.tensor(network.input.fields["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean)
        layers = list(network.layers)
        kinds = [layer.kind for layer in layers]
        if kinds[:4] != ["con", "affine", "relu", "max_pool"] or kinds[-2:] != ["avg_pool", "fc"]:
            raise DlibFormatError(f"unexpected stem or head: {kinds[:4]} ... {kinds[-2:]}")
        self.stem = _conv_affine(layers[0], layers[1])
        pool = layers[3].fields
        self.pool_kernel, self.pool_stride = pool["kernel"], pool["stride"]
        blocks: list[nn.Module] = []
        i = 4
        while i < len(layers) - 2:
            unit = kinds[i : i + 8]
            down = len(unit) == 8 and unit[5] == "avg_pool"
            expected = (
                ["con", "affine", "relu", "con", "affine"]
                + (["avg_pool"] if down else [])
                + ["add_prev", "relu"]
            )
            if kinds[i : i + len(expected)] != expected:
                raise DlibFormatError(f"unexpected layers at {i}: {kinds[i : i + len(expected)]}")
            if down and (
                layers[i + 5].fields["kernel"] != (2, 2) or layers[i + 5].fields["stride"] != (2, 2)
            ):
                raise DlibFormatError("a down-sampling shortcut is not a 2x2/2 average")
            conv1 = _conv_affine(layers[i], layers[i + 1])
            conv2 = _conv_affine(layers[i + 3], layers[i + 4])
            blocks.append(_Residual(conv1, conv2, down))
            i += len(expected)
        self.blocks = nn.Sequential(*blocks)
        head = layers[-1].fields
        if layers[-2].fields["kernel"] != (0, 0) or head["bias"] is not None:
            raise DlibFormatError("the head is not an average over all positions and an fc without bias")
        weight = torch.from_numpy(np.ascontiguousarray(np.asarray(head["weight"]).T))
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips - self.mean) / 256.0
        x = F.relu(self.stem(x))
        x = F.max_pool2d(x, self.pool_kernel, self.pool_stride)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


@lru_cache(maxsize=1)
def load_network(path: str | None = None) -> DlibNetwork:
    """The parsed .dat (read once per process; the modules on each device are built from it)."""
    return read_network(path or model_path())
