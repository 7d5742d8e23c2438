"""A dataset's settings, carried in IMM's ``WorkflowParameters`` (a list of Name/Value string pairs).

IMM documents the field as unused; immray gives it a job: per-dataset knobs such as the number of good
faces a new person needs (``FigureClusterMinFaces``). Every known name is registered here once with its
validator and default, so CreateDataset/UpdateDataset refuse unknown names and bad values with
InvalidArgument, GetDataset shows every value in force (defaults filled in), and the code that uses a
setting reads a typed value with :func:`setting`. A later feature adds its knob with one ``register`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from immray.protocol.errors import ImmError

MAX_PARAMETERS = 64
MAX_VALUE_LENGTH = 1024


@dataclass(frozen=True)
class WorkflowParameter:
    """One known setting. ``parse`` turns the text value into the typed one or raises ValueError(why)."""

    name: str
    default: str
    parse: Callable[[str], Any]
    description: str

    def __post_init__(self) -> None:
        self.parse(self.default)  # a default that does not validate is a bug, found at import


_REGISTRY: dict[str, WorkflowParameter] = {}


def register(parameter: WorkflowParameter) -> WorkflowParameter:
    if parameter.name in _REGISTRY:
        raise ValueError(f"workflow parameter {parameter.name} is registered twice")
    _REGISTRY[parameter.name] = parameter
    return parameter


def known() -> dict[str, WorkflowParameter]:
    return dict(sorted(_REGISTRY.items()))


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        stripped = text.strip()
        if not stripped.lstrip("+-").isdigit() or len(stripped) > 19:
            raise ValueError(f"must be an integer from {low} to {high}")
        value = int(stripped)
        if not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return parse


def choice(*words: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in words:
            raise ValueError(f"must be one of {', '.join(words)}")
        return text

    return parse


def boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError("must be true or false")
    return text.lower() == "true"


FIGURE_CLUSTER_MIN_FACES = register(
    WorkflowParameter(
        "FigureClusterMinFaces",
        default="3",
        parse=integer(1, 100),
        description="good faces of one person needed before a new cluster (person) is made",
    )
)

AUTO_CLUSTERING = register(
    WorkflowParameter(
        "AutoClustering",
        default="false",
        parse=boolean,
        description="start a FaceClustering task by itself once indexing has settled (immray.bindings)",
    )
)
AUTO_CLUSTERING_QUIET_SECONDS = register(
    WorkflowParameter(
        "AutoClusteringQuietSeconds",
        default="30",
        parse=integer(0, 86_400),
        description="AutoClustering waits until no file changed for this many seconds",
    )
)


def _topic_name(text: str) -> str:
    if len(text) > 256 or not text.isprintable():
        raise ValueError("must be a topic name of at most 256 printable characters")
    return text


AUTO_CLUSTERING_TOPIC = register(
    WorkflowParameter(
        "AutoClusteringTopic",
        default="",
        parse=_topic_name,
        description="MNS topic (one of the server's notify topics) told when an automatic task ends",
    )
)

# Which faces indexing looks for (services.analysis maps the mode to a detector). ``default`` is the server's
# IMMRAY_DETECTOR (``accurate`` unless its operator chose otherwise), so a dataset that never set the mode
# follows the server, and GetDataset -> UpdateDataset round trips never pin the server's current choice.
FACE_DETECTION_MODES = ("default", "accurate", "fast")
FACE_DETECTION_MODE = register(
    WorkflowParameter(
        "FaceDetectionMode",
        default="default",
        parse=choice(*FACE_DETECTION_MODES),
        description="how photos indexed from then on are searched for faces: default (the server's "
        "detector), accurate (CenterFace at the photo's own scale) or fast (on a shrunk photo: about 5x "
        "cheaper, a few more small faces missed)",
    )
)

# Age, gender and emotion of every face (face-api's networks, in the same batch as the embedding). Off saves
# their cost for datasets that never filter on them; the faces indexed while it is off carry none.
FACE_ATTRIBUTES = register(
    WorkflowParameter(
        "FaceAttributes",
        default="true",
        parse=boolean,
        description="estimate each face's Age, Gender and Emotion when its photo is indexed (false: "
        "leave them out, a little faster)",
    )
)


def validate(raw: Any, *, parameter: str = "WorkflowParameters") -> list[dict[str, str]]:
    """The pairs a client sent, checked: ``[{"Name": ..., "Value": ...}]``, known names, good values.

    Returns the normalised pairs, sorted by name, as they are stored (the values as given, so GetDataset
    echoes exactly what the user set).
    """
    if not isinstance(raw, list):
        raise ImmError.invalid_argument(
            f"The parameter {parameter} must be a JSON array of Name/Value pairs."
        )
    if len(raw) > MAX_PARAMETERS:
        raise ImmError.invalid_argument(f"The parameter {parameter} holds more than {MAX_PARAMETERS} items.")
    seen: dict[str, str] = {}
    for index, item in enumerate(raw, 1):
        if not isinstance(item, dict) or set(item) - {"Name", "Value"}:
            raise ImmError.invalid_argument(
                f"{parameter} item {index} must be an object with Name and Value, e.g. "
                '{"Name":"FigureClusterMinFaces","Value":"3"}.'
            )
        name, value = item.get("Name"), item.get("Value")
        if not isinstance(name, str) or not name:
            raise ImmError.invalid_argument(f"{parameter} item {index} has no Name.")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ImmError.invalid_argument(f"{parameter} {name} needs a Value (a string).")
        value = str(value)
        spec = _REGISTRY.get(name)
        if spec is None:
            names = ", ".join(known()) or "none"
            raise ImmError.invalid_argument(
                f"{parameter}: unknown name {name[:128]!r}; the known names are {names}."
            )
        if name in seen:
            raise ImmError.invalid_argument(f"{parameter}: {name} is given more than once.")
        if len(value) > MAX_VALUE_LENGTH:
            raise ImmError.invalid_argument(f"{parameter} {name}: the value is too long.")
        try:
            spec.parse(value)
        except ValueError as exc:
            raise ImmError.invalid_argument(f"{parameter} {name} {exc}, not {value[:64]!r}.") from None
        seen[name] = value
    return [{"Name": name, "Value": seen[name]} for name in sorted(seen)]


def in_force(stored: Iterable[Mapping[str, str]] | None) -> list[dict[str, str]]:
    """Every known parameter with the value in force: the dataset's own, else the default."""
    own = {item["Name"]: item["Value"] for item in stored or () if item.get("Name") in _REGISTRY}
    return [{"Name": name, "Value": own.get(name, spec.default)} for name, spec in known().items()]


def setting(stored: Iterable[Mapping[str, str]] | None, name: str) -> Any:
    """The typed value in force of one parameter, e.g. ``setting(dataset.workflow_parameters,
    "FigureClusterMinFaces") -> 3``."""
    spec = _REGISTRY[name]
    for item in stored or ():
        if item.get("Name") == name:
            try:
                return spec.parse(item["Value"])
            except ValueError:
                break  # a value stored before its rule tightened: the default is safe
    return spec.parse(spec.default)
