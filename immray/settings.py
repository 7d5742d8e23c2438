"""One Settings object for the whole process.

Nothing else in immray reads the environment: every knob is a field here, set by a ``IMMRAY_*``
variable or by an optional ``immray.env`` file in the working directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "immray"


class NotifyTopic(BaseModel):
    """Where the messages of one MNS/RocketMQ TopicName go: a Redis stream, a RabbitMQ exchange or queue,
    or an HTTP(S) webhook whose body is signed with ``secret`` (HMAC-SHA256)."""

    url: str = Field(
        description="redis://..., amqp://... or http(s)://...", repr=False
    )  # may hold a password
    stream: str | None = Field(default=None, description="Redis: the stream messages are added to")
    exchange: str | None = Field(default=None, description="RabbitMQ: the exchange to publish to")
    routing_key: str = Field(default="", description="RabbitMQ: routing key used with exchange")
    queue: str | None = Field(default=None, description="RabbitMQ: a queue to publish to directly")
    secret: SecretStr | None = Field(default=None, description="webhook: HMAC-SHA256 key of the body")
    timeout_seconds: float = Field(default=10.0, gt=0, description="per delivery attempt")

    @property
    def scheme(self) -> str:
        return self.url.split(":", 1)[0].lower()

    @property
    def display_url(self) -> str:
        """The URL without its user and password, for logs and error messages."""
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else self.url

    @model_validator(mode="after")
    def _fits_its_sink(self) -> NotifyTopic:
        scheme = self.scheme
        if scheme in ("redis", "rediss", "unix"):
            if not self.stream:
                raise ValueError("a Redis topic needs `stream`")
        elif scheme in ("amqp", "amqps"):
            if (self.exchange is None) == (self.queue is None):
                raise ValueError("a RabbitMQ topic needs exactly one of `exchange` or `queue`")
        elif scheme in ("http", "https"):
            if self.secret is None or not self.secret.get_secret_value():
                raise ValueError("a webhook topic needs `secret` (its body is signed with it)")
        else:
            raise ValueError(f"unsupported notification URL scheme {scheme!r}: use redis, amqp or https")
        return self


class ObjectBucket(BaseModel):
    """The S3-compatible endpoint that serves one bucket of ``s3://bucket/key`` and ``oss://bucket/key`` URIs
    (AWS S3, MinIO, Ceph, Alibaba OSS's S3-compatible endpoint, ...)."""

    endpoint_url: str = Field(
        description="e.g. http://127.0.0.1:9000 or https://oss-cn-hangzhou.aliyuncs.com"
    )
    access_key_id: str | None = Field(default=None, description="None: boto3's own credential chain")
    secret_access_key: SecretStr | None = Field(default=None, repr=False)
    region: str | None = Field(default=None, description="signing region, e.g. us-east-1")
    addressing_style: str = Field(default="path", pattern="^(auto|path|virtual)$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMMRAY_", env_file="immray.env", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="database, keys, indexes, thumbnails"
    )
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default: SQLite in data_dir")

    # The API server (`immray serve`).
    host: str = Field(default="127.0.0.1", description="address the API server listens on")
    port: int = Field(default=8400, ge=0, le=65535, description="port the API server listens on")
    allowed_roots: list[Path] = Field(
        default_factory=list, description="folders whose files file:// URIs may name (serve --root)"
    )
    # s3:// and oss:// URIs: bucket -> endpoint, e.g. IMMRAY_BUCKETS='{"photos": {"endpoint_url":
    # "http://127.0.0.1:9000", "access_key_id": "...", "secret_access_key": "..."}}'; a key written
    # "oss://photos" or "s3://photos" serves that scheme only. Unlisted buckets are refused.
    buckets: dict[str, ObjectBucket] = Field(default_factory=dict, description="bucket -> S3 endpoint")
    max_source_bytes: int = Field(default=256 * 2**20, ge=1, description="larger files fail to index")

    # Face analysis (mapped onto immray.faces.AnalyzerConfig by services.analysis). ``detector`` is for
    # every call and every dataset whose FaceDetectionMode WorkflowParameter is ``default``.
    detector: str = Field(
        default="accurate",
        description="accurate (CenterFace at the photo's own scale) | fast (on a shrunk photo, ~5x cheaper); "
        "hog and cnn, the former dlib detectors' names, mean fast and accurate",
    )
    max_image_pixels: int = Field(default=100_000_000, description="larger images are refused as bombs")
    detect_max_side: int = Field(default=2048, description="images are downscaled to this for detection")
    min_face_px: int = Field(default=40, description="smallest face side (original pixels) to look for")
    device: str = Field(
        default="auto",
        description="where the face models run: auto (the GPU the process sees, else the CPU) | cpu | cuda",
    )
    embedder: str = Field(
        default="dlib-resnet-v1",
        description="dlib-resnet-v1 (the default: dlib's ResNet on torch) | open_clip:<model>@<checkpoint path> "
        "(an OpenCLIP image tower of one's own; its faces are never compared with another embedder's)",
    )
    mirror: bool = Field(
        default=True,
        description="descriptors average each face with its mirror image (more accurate; a change re-keys "
        "the stored vectors: faces described the other way are not clustered with them)",
    )

    # Tasks: each dataset's clustering and merging tasks run in its dataset actor (immray.actors).
    task_retention_days: float = Field(default=7.0, gt=0, description="finished tasks are kept this long")
    task_lease_seconds: float = Field(default=30.0, gt=0, description="a dead worker's task reruns then")
    task_max_attempts: int = Field(default=3, ge=1, description="runs of a task cut short before it fails")
    analysis_lease_seconds: float = Field(
        default=60.0, gt=0, description="a photo whose analysis died with its process is analysed again then"
    )
    vector_store_wait_seconds: float = Field(
        default=600.0,
        ge=0,
        description="a clustering task waits this long for an unreachable Milvus before it fails",
    )
    task_poll_seconds: float = Field(default=2.0, gt=0, description="how often the pool looks for work")

    # Bindings (immray.bindings): bound folders and buckets are listed again this often (and folders
    # are watched with watchdog where the platform allows, so changes there are seen at once).
    binding_scan_seconds: float = Field(default=60.0, gt=0, description="a binding's location is re-listed")
    binding_watch: bool = Field(default=True, description="watch bound folders for changes (watchdog)")

    # Ray: where `immray serve` runs the Serve application and the actors (immray.serve, immray.actors).
    ray_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("IMMRAY_RAY_ADDRESS", "RAY_ADDRESS"),
        description="a Ray cluster to join (ray://, host:port or auto); none: a local Ray started by serve",
    )
    ray_namespace: str = Field(
        default="immray",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the Ray namespace of the dataset actors (servers sharing a Ray cluster use different ones)",
    )
    ray_num_cpus: int = Field(default=0, ge=0, description="CPUs of the local Ray started by serve; 0 = all")
    dataset_actor_idle_seconds: float = Field(
        default=300.0,
        gt=0,
        description="a dataset actor with no task for this long exits (made again on use)",
    )
    indexing_concurrency: int = Field(
        default=32, ge=1, le=1024, description="photos read, sent to analysis and stored at once per ingress"
    )
    log_format: str = Field(default="text", pattern="^(text|json)$", description="json: one JSON per line")

    # Face vectors (immray.vectors): a Milvus server by URI (e.g. http://milvus:19530); none: milvus-lite in
    # data_dir/milvus, served to every immray process by the `milvus-lite server` that `immray serve` starts.
    milvus_uri: str | None = Field(default=None, description="a Milvus server; none: milvus-lite in data_dir")
    milvus_collection_prefix: str = Field(
        default="immray_faces",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="collection names start with it (servers sharing one Milvus use different ones)",
    )
    milvus_session_reads: bool = Field(
        default=True,
        description="a clustering task's reads after its first Strong one are Session (~0.2 s less a call on a "
        "server); false on a Milvus with several query replicas",
    )

    # Notifications: MNS/RocketMQ TopicName -> sink, e.g.
    # IMMRAY_NOTIFY_TOPICS='{"done": {"url": "redis://127.0.0.1:6379/0", "stream": "immray"}}'
    notify_topics: dict[str, NotifyTopic] = Field(default_factory=dict, description="topic name -> sink")
    notify_max_attempts: int = Field(default=20, ge=1, description="deliveries tried before giving up")
    notify_backoff_seconds: float = Field(default=1.0, gt=0, description="first retry delay, then doubled")
    notify_backoff_max_seconds: float = Field(default=600.0, gt=0, description="longest retry delay")
    notify_poll_seconds: float = Field(default=1.0, gt=0, description="how often the outbox is read")

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        from immray.faces.config import DETECTORS

        if value not in DETECTORS:
            raise ValueError(f"must be one of {', '.join(DETECTORS)}, not {value!r}")
        return value

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value not in ("auto", "cpu", "cuda") and not value.startswith("cuda:"):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, not {value!r}")
        return value

    @field_validator("embedder")
    @classmethod
    def _known_embedder(cls, value: str) -> str:
        from immray.faces.embed import check_embedder_spec

        check_embedder_spec(value)  # ValueError with the reason
        return value

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None = None) -> Settings:
        """The settings of a Ray replica or actor: the environment's (IMMRAY_*) with the values its
        launcher passed (``to_overrides``) on top; the launcher's win."""
        return cls(**(overrides or {}))

    def to_overrides(self) -> dict[str, Any]:
        """The values set explicitly on this object (by a command's options or a test), as JSON, secrets
        included: what a Ray replica or actor needs to rebuild these settings with ``from_overrides``."""
        return _reveal(self.model_dump(mode="python", exclude_unset=True, by_alias=False))

    @property
    def credentials_path(self) -> Path:
        """Where `serve` saves the admin key on first start and the CLI finds it (mode 0600)."""
        return self.data_dir / "credentials.json"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'immray.db'}"


def _reveal(value: Any) -> Any:
    """JSON-ready values, secrets shown (pydantic's JSON mode masks them)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {key: _reveal(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(item) for item in value]
    return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
