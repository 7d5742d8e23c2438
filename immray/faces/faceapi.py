"""face-api's age/gender and expression networks (npm ``@vladmandic/face-api``, MIT), ported to torch.

Both read a 112x112 RGB face crop prepared as face-api prepares it (``face_batch``): the detected box cut out
of the photo (clipped to the image, floored to whole pixels), padded to a square with black borders on both
sides of its short side, resized bilinearly the way TensorFlow.js does (no half-pixel centres), minus the
dataset's mean colour, divided by 255.

- ``AgeGenderNet``: a tiny Xception (2 main blocks) to 512 features, then age in years (a regression) and the
  male/female logits.
- ``ExpressionNet``: four dense blocks of separable convolutions to 256 features, then the logits of
  ``EXPRESSIONS``.

TensorFlow's ``same`` padding is asymmetric for stride 2 (the extra row and column go at the bottom and
right); ``_same`` reproduces it. Weights: ``weights/faceapi_*.pt``, made by ``weights/convert_faceapi.py``;
they hold face-api's 8-bit quantised tensors with their scale and offset, dequantised here at load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_DIR = Path(__file__).parent / "weights"
AGE_GENDER_WEIGHTS = WEIGHTS_DIR / "faceapi_age_gender.pt"
EXPRESSION_WEIGHTS = WEIGHTS_DIR / "faceapi_expression.pt"

INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
#: face-api's expression labels, in the order of the network's outputs.
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")


def _same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """Pad ``x`` as TensorFlow's ``same`` does: the odd pixel of padding at the bottom and right."""
    height, width = x.shape[-2:]
    pads = []
    for size in (width, height):
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + kernel - size)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class Conv(nn.Module):
    """A plain convolution with bias, TensorFlow ``same`` padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv = nn.Conv2d(cin, cout, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_same(x, self.kernel, self.stride))


class SeparableConv(nn.Module):
    """Depthwise 3x3 (no bias) then pointwise 1x1 with bias: ``tf.separableConv2d`` plus its bias."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.depthwise = nn.Conv2d(cin, cin, 3, stride, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(_same(x, 3, self.stride)))


class ReductionBlock(nn.Module):
    def __init__(self, cin: int, cout: int, activate_input: bool = True) -> None:
        super().__init__()
        self.activate_input = activate_input
        self.separable_conv0 = SeparableConv(cin, cout)
        self.separable_conv1 = SeparableConv(cout, cout)
        self.expansion_conv = Conv(cin, cout, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(x) if self.activate_input else x
        out = self.separable_conv1(F.relu(self.separable_conv0(out)))
        out = F.max_pool2d(_same(out, 3, 2, value=float("-inf")), 3, 2)
        return out + self.expansion_conv(x)


class MainBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.separable_conv0 = SeparableConv(channels, channels)
        self.separable_conv1 = SeparableConv(channels, channels)
        self.separable_conv2 = SeparableConv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.separable_conv0(F.relu(x))
        out = self.separable_conv1(F.relu(out))
        out = self.separable_conv2(F.relu(out))
        return out + x


class AgeGenderNet(nn.Module):
    """Normalised 112x112 crops (n, 3, 112, 112) -> (age in years (n,), male/female logits (n, 2))."""

    def __init__(self, main_blocks: int = 2) -> None:
        super().__init__()
        self.conv_in = Conv(3, 32, 3, 2)
        self.reduction_block_0 = ReductionBlock(32, 64, activate_input=False)
        self.reduction_block_1 = ReductionBlock(64, 128)
        self.middle_flow = nn.ModuleList(MainBlock(128) for _ in range(main_blocks))
        self.exit_reduction_block = ReductionBlock(128, 256)
        self.exit_separable_conv = SeparableConv(256, 512)
        self.fc_age = nn.Linear(512, 1)
        self.fc_gender = nn.Linear(512, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.relu(self.conv_in(x))
        out = self.reduction_block_1(self.reduction_block_0(out))
        for block in self.middle_flow:
            out = block(out)
        out = F.relu(self.exit_separable_conv(self.exit_reduction_block(out)))
        pooled = F.avg_pool2d(out, 7, 2).flatten(1)
        return self.fc_age(pooled)[:, 0], self.fc_gender(pooled)


class DenseBlock(nn.Module):
    """face-api's ``denseBlock4``: four convolutions, each fed the sum of the outputs before it."""

    def __init__(self, cin: int, cout: int, first: bool = False) -> None:
        super().__init__()
        self.conv0 = Conv(cin, cout, 3, 2) if first else SeparableConv(cin, cout, 2)
        self.conv1 = SeparableConv(cout, cout)
        self.conv2 = SeparableConv(cout, cout)
        self.conv3 = SeparableConv(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = F.relu(self.conv0(x))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class ExpressionNet(nn.Module):
    """Normalised 112x112 crops (n, 3, 112, 112) -> the logits of ``EXPRESSIONS`` (n, 7)."""

    def __init__(self) -> None:
        super().__init__()
        self.dense0 = DenseBlock(3, 32, first=True)
        self.dense1 = DenseBlock(32, 64)
        self.dense2 = DenseBlock(64, 128)
        self.dense3 = DenseBlock(128, 256)
        self.fc = nn.Linear(256, len(EXPRESSIONS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return self.fc(F.avg_pool2d(out, 7, 2).flatten(1))


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """TensorFlow's bilinear resize (align_corners=False, half_pixel_centers=False) along one axis."""
    scale = size_in / size_out
    source = np.arange(size_out) * scale
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = source - low
    matrix = np.zeros((size_out, size_in), dtype=np.float64)
    matrix[np.arange(size_out), low] += 1 - frac
    matrix[np.arange(size_out), high] += frac
    return matrix


def crop_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int] | None:
    """face-api's ``clipAtImageBorders``: (x, y, w, h) in whole pixels, or None when nothing is left."""
    left, top, right, bottom = box
    x, y = max(left, 0.0), max(top, 0.0)
    w = min(right - x, width - x)
    h = min(bottom - y, height - y)
    x, y, w, h = (int(np.floor(v)) for v in (x, y, w, h))
    return (x, y, w, h) if w > 0 and h > 0 else None


def face_input(pixels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The network input (3, 112, 112) float32 for one clipped box of an (H, W, 3) uint8 RGB image."""
    x, y, w, h = box
    crop = pixels[y : y + h, x : x + w].astype(np.float64)
    diff = abs(h - w)
    if diff:
        after = int(np.floor(diff * 0.5 + 0.5))  # JavaScript's Math.round
        before = diff - after
        pad = ((before, after), (0, 0), (0, 0)) if w > h else ((0, 0), (before, after), (0, 0))
        crop = np.pad(crop, pad)
    side = crop.shape[0]
    if side != INPUT_SIZE:
        resize = _resize_matrix(side, INPUT_SIZE)
        # resize @ crop @ resize.T per channel, as two BLAS products: a three-operand einsum loops
        # naively (about a second a face), these take a millisecond
        rows = np.tensordot(resize, crop, axes=1)  # (112, side, 3)
        crop = np.tensordot(rows, resize, axes=([1], [1])).transpose(0, 2, 1)  # (112, 112, 3)
    crop = crop.astype(np.float32)
    out = (crop - np.asarray(MEAN_RGB, dtype=np.float32)) / np.float32(255)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def _load(net: nn.Module, weights: Path, device: torch.device | str) -> nn.Module:
    state = torch.load(weights, map_location="cpu", weights_only=True)
    tensors = {}
    for name, value in state.items():
        if isinstance(value, tuple):  # (uint8 codes, scale, min): face-api's quantisation
            codes, scale, low = value
            value = (codes.double() * scale + low).float()
        tensors[name] = value
    net.load_state_dict(tensors)
    return net.eval().to(device)


def load_age_gender(device: torch.device | str = "cpu", weights: Path = AGE_GENDER_WEIGHTS) -> AgeGenderNet:
    """The age/gender network with the shipped weights, in eval mode on ``device``."""
    return _load(AgeGenderNet(), weights, device)  # type: ignore[return-value]


def load_expression(device: torch.device | str = "cpu", weights: Path = EXPRESSION_WEIGHTS) -> ExpressionNet:
    """The expression network with the shipped weights, in eval mode on ``device``."""
    return _load(ExpressionNet(), weights, device)  # type: ignore[return-value]
