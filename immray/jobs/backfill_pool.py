"""The actor pool of a backfill (Ray Data ``map_batches`` over the face models), sized by a Serve config.

The config's ``backfill`` entry of the immray application's ``args`` says it (``actors``: a size, or
``[min, max]`` for a pool Ray Data grows while photos wait; ``batch_size``; ``num_cpus``; ``num_gpus`` per
actor); without one, the pool mirrors the ``FaceAnalysis`` deployment (its replicas, their CPUs and GPUs,
its ``max_batch_size``), so a backfill runs the models as the server does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PoolSpec:
    min_actors: int = 1
    max_actors: int = 1
    batch_size: int = 8
    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_actors <= self.max_actors:
            raise ValueError(
                f"the pool's actors must be 1 <= min <= max, not {self.min_actors}..{self.max_actors}"
            )
        if self.batch_size < 1 or self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError("batch_size must be >= 1, num_cpus and num_gpus >= 0")

    @property
    def concurrency(self) -> int | tuple[int, int]:
        """The pool's size: a fixed pool, or an autoscaling one (min, max)."""
        return self.min_actors if self.min_actors == self.max_actors else (self.min_actors, self.max_actors)

    def compute(self):
        """Ray Data's ``compute`` of ``map_batches``: the actor pool."""
        from ray.data import ActorPoolStrategy

        if self.min_actors == self.max_actors:
            return ActorPoolStrategy(size=self.min_actors)
        return ActorPoolStrategy(min_size=self.min_actors, max_size=self.max_actors)

    def args(self) -> list[str]:
        """The job's command-line options that carry this pool."""
        return [
            "--actors",
            str(self.min_actors)
            if self.min_actors == self.max_actors
            else f"{self.min_actors}-{self.max_actors}",
            "--batch-size",
            str(self.batch_size),
            "--num-cpus",
            _number(self.num_cpus),
            "--num-gpus",
            _number(self.num_gpus),
        ]


def parse_actors(text: str) -> tuple[int, int]:
    """``4`` or ``1-4`` -> (min, max)."""
    low, _, high = text.partition("-")
    try:
        return int(low), int(high or low)
    except ValueError:
        raise ValueError(f"actors: a count (4) or a range (1-4), not {text!r}") from None


def pool_from_config(config: Mapping[str, Any], **overrides: Any) -> PoolSpec:
    """The pool of the immray application of Serve config ``config``; ``overrides`` (not None) win."""
    app = next(
        (a for a in config.get("applications") or [] if str(a.get("import_path", "")).startswith("immray.")),
        None,
    )
    if app is None:
        raise ValueError("the Serve config has no immray application")
    given = dict((app.get("args") or {}).get("backfill") or {})
    if given:
        actors = given.get("actors", 1)
        low, high = (actors, actors) if isinstance(actors, int) else (int(actors[0]), int(actors[1]))
        values: dict[str, Any] = {
            "min_actors": low,
            "max_actors": high,
            "batch_size": int(given.get("batch_size", 8)),
            "num_cpus": float(given.get("num_cpus", 1)),
            "num_gpus": float(given.get("num_gpus", 0)),
        }
    else:
        analysis = next((d for d in app.get("deployments") or [] if d.get("name") == "FaceAnalysis"), {})
        options = analysis.get("ray_actor_options") or {}
        scaling = analysis.get("autoscaling_config") or {}
        replicas = analysis.get("num_replicas")
        if scaling or not isinstance(replicas, int):
            low, high = int(scaling.get("min_replicas", 1) or 1), int(scaling.get("max_replicas", 1) or 1)
        else:
            low = high = replicas
        values = {
            "min_actors": low,
            "max_actors": high,
            "batch_size": int((analysis.get("user_config") or {}).get("max_batch_size", 8)),
            "num_cpus": float(options.get("num_cpus", 1)),
            "num_gpus": float(options.get("num_gpus", 0)),
        }
    values.update({name: value for name, value in overrides.items() if value is not None})
    return PoolSpec(**values)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
