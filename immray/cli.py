"""The `immray` command. Each subcommand is a thin shell over a module that does the work."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from immray import __version__

if TYPE_CHECKING:
    from immray.services.database import Database
    from immray.settings import Settings


class _Commands(click.Group):
    """immray's commands: a bad IMMRAY_* setting is a one-line error naming it, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            raise click.ClickException(_settings_error(exc)) from None


def _settings_error(exc: object) -> str:
    problems = []
    for error in exc.errors():  # type: ignore[attr-defined]
        name, *inside = (str(part) for part in error["loc"])
        where = f"IMMRAY_{name.upper()}" + "".join(f"[{part}]" for part in inside)
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return "invalid setting " + "; ".join(problems)


@click.group(cls=_Commands)
@click.version_option(__version__, prog_name="immray")
def main() -> None:
    """immray: group the faces of a photo collection by person."""


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def analyze(paths: tuple[str, ...]) -> None:
    """Print the faces found in each image as JSON (IMM Figure fields).

    One JSON object per file and line: URI, ContentType, ImageWidth, ImageHeight, FigureCount and Figures,
    or URI and Error for a file that cannot be read. Exits non-zero if any file failed.
    """
    import json
    import sys
    from pathlib import Path

    from tqdm import tqdm

    from immray.faces import ImageError, get_analyzer
    from immray.services.analysis import analyzer_config
    from immray.settings import get_settings

    settings = get_settings()  # a bad IMMRAY_* value is reported by _Commands
    try:
        config = analyzer_config(settings)
    except ValueError as exc:
        raise click.ClickException(f"invalid face analysis settings: {exc}") from None
    analyzer = get_analyzer(config)
    failed = 0
    for path in tqdm(paths, desc="analyze", unit="image", disable=True if len(paths) < 2 else None):
        file = Path(path)
        # normalised (no "..") but not resolved: a symlinked folder keeps the name the user gave it
        record: dict[str, object] = {"URI": Path(os.path.abspath(file)).as_uri()}
        try:
            image = analyzer.analyze(file.read_bytes())
        except OSError as exc:
            record["Error"] = f"[InvalidArgument] cannot read {path}: {exc.strerror or exc}"
        except ImageError as exc:
            record["Error"] = exc.reason
        except Exception as exc:  # one broken file must never stop the others
            record["Error"] = f"[InternalError] {type(exc).__name__}: {exc}"
        else:
            record |= {
                "ContentType": image.content_type,
                "ImageWidth": image.width,
                "ImageHeight": image.height,
                "FigureCount": len(image.faces),
                "Figures": [face.to_figure() for face in image.faces],
            }
        failed += "Error" in record
        tqdm.write(json.dumps(record, ensure_ascii=False), file=sys.stdout)
    if failed:
        click.echo(f"{failed} of {len(paths)} files failed", err=True)
        click.get_current_context().exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info(as_json: bool) -> None:
    """Which torch runs, on which device (GPU or CPU threads), and which detector and embedder are configured."""
    import json

    from immray.runtime_info import runtime_info
    from immray.services.analysis import analyzer_config
    from immray.settings import get_settings

    settings = get_settings()  # a bad IMMRAY_* value is reported by _Commands
    try:
        facts = runtime_info(analyzer_config(settings))
    except ValueError as exc:
        raise click.ClickException(f"invalid face analysis settings: {exc}") from None
    if as_json:
        click.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        click.echo(f"{key + ':':<18}{value}")


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to the configured database."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from immray.settings import get_settings
    from immray.store import DatabaseURLError, normalize_url, upgrade

    settings = get_settings()
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        url = normalize_url(settings.resolved_database_url)
        shown = url.render_as_string(hide_password=True)
        result = upgrade(url)
    except DatabaseURLError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot create the data directory {settings.data_dir}: {exc}") from None
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot upgrade {shown}: {getattr(exc, 'orig', None) or exc}") from None
    except CommandError as exc:  # e.g. the database is at a revision this version does not know
        raise click.ClickException(f"cannot upgrade {shown}: {exc}") from None
    if result.changed:
        click.echo(f"Database {shown}: upgraded from {result.before or 'empty'} to {result.after} (head).")
    else:
        click.echo(f"Database {shown}: already at {result.after} (head), nothing to do.")


# --- the API server and its access keys ------------------------------------------------------------


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    """The process settings with the command line's overrides (options given win over IMMRAY_*)."""
    from immray.settings import get_settings

    updates = {name: value for name, value in overrides.items() if value is not None}
    if data_dir is not None:
        updates["data_dir"] = data_dir.expanduser().absolute()
    return get_settings().model_copy(update=updates)


_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Database, keys and credentials live here (default: IMMRAY_DATA_DIR or ~/.local/share/immray).",
)


@main.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1; IMMRAY_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default 8400; IMMRAY_PORT).")
@click.option(
    "--root",
    "roots",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A folder whose files may be indexed by file:// URI; repeatable. Replaces IMMRAY_ALLOWED_ROOTS.",
)
@_DATA_DIR
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Serve config file (default: configs/serve.local.yaml of the checkout).",
)
@click.option(
    "--address",
    help="A Ray cluster to deploy on (RAY_ADDRESS; default: start a local Ray for this server).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def serve(
    host: str | None,
    port: int | None,
    roots: tuple[Path, ...],
    data_dir: Path | None,
    config_path: Path | None,
    address: str | None,
    log_level: str,
) -> None:
    """Run the IMM-compatible API server on Ray Serve (Ctrl-C stops it).

    Starts a local Ray (or joins --address / RAY_ADDRESS) and deploys the Serve application of the config
    file with this server's settings. The database is migrated on start. On the very first start an admin
    access key is created, printed once and saved (mode 0600) in the data directory's credentials.json,
    where immray's commands find it.
    """
    from immray.api.startup import StartupError, check_roots, prepare_server
    from immray.observability.logs import configure_logging
    from immray.serve.app import DeployError, load_config

    settings = _settings(data_dir, host=host, port=port, ray_address=address)
    configure_logging(settings.log_format, log_level)
    logging.getLogger("alembic").setLevel(
        max(logging.WARNING, logging.getLogger().level)
    )  # "Database:" says it
    try:
        if roots:
            settings = settings.model_copy(update={"allowed_roots": check_roots(list(roots))})
        config = load_config(config_path)
        prepared = prepare_server(settings)
    except (StartupError, DeployError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        if prepared.admin_key is not None:
            key = prepared.admin_key
            click.echo("First start: created the admin access key. Its secret is shown this once:")
            click.echo(f"  AccessKeyId:     {key.info.access_key_id}")
            click.echo(f"  AccessKeySecret: {key.secret}")
            if prepared.credentials_error is None:
                click.echo(
                    f"Saved to {prepared.credentials_path} (mode 0600), where immray's commands find it."
                )
        if prepared.credentials_error is not None:
            click.echo(f"Warning: {prepared.credentials_error}", err=True)
        roots_shown = (
            ", ".join(str(root) for root in settings.allowed_roots) or "none (file:// indexing is off)"
        )
        click.echo(f"Database: {prepared.database}. Allowed roots: {roots_shown}.")
    finally:
        prepared.db.close()
    _run_on_ray(settings, config, prepared.admin_key)


def _run_on_ray(settings: Settings, config: dict, new_admin) -> None:
    """Start or join Ray, deploy the application, print where it answers, and wait for Ctrl-C."""
    import signal
    import time

    import ray
    from ray import serve as ray_serve

    from immray.serve.app import APP_NAME, DeployError, deploy, with_settings
    from immray.serve.cluster import connect

    try:
        started_here, dashboard = connect(settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    # A service manager's SIGTERM stops it as Ctrl-C does. SIGINT too, explicitly: a process started in the
    # background of a script inherits SIGINT ignored, and Python then never turns it into KeyboardInterrupt.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    lite = None
    try:
        if not settings.milvus_uri:  # milvus-lite: one process owns the file, every other one connects
            from immray.vectors.endpoint import LiteServer

            lite = LiteServer(settings)
            try:
                uri = lite.start()
            except RuntimeError as exc:
                raise click.ClickException(str(exc)) from None
            settings = settings.model_copy(update={"milvus_uri": uri})
            click.echo(f"Face vectors: milvus-lite in {settings.data_dir / 'milvus'}, served on {uri}")
        if dashboard:
            token = Path.home() / ".ray" / "auth_token"  # Ray's token authentication, on by default
            asks = f" (it asks for the token in {token})" if started_here and token.is_file() else ""
            click.echo(f"Ray dashboard: {dashboard}{asks}")
        click.echo("Deploying the Serve application (the first start takes a while)...")
        sys.stdout.flush()
        deploy(with_settings(config, settings, host=settings.host, port=settings.port))
        click.echo(f"IMM API on http://{settings.host}:{settings.port}/ (API version 2020-09-30)")
        link = _web_link(settings, new_admin, ray_serve.get_app_handle(APP_NAME))
        if link:
            click.echo(f"Web page: {link} (signs you in once; or sign in at /ui with an access key)")
        sys.stdout.flush()
        while True:
            time.sleep(5)
            if lite is not None:
                try:
                    if lite.keep_alive():
                        click.echo(f"milvus-lite server died; started again on {lite.uri}")
                except RuntimeError as exc:  # it will be tried again; the tasks wait for it meanwhile
                    click.echo(f"milvus-lite server could not start again: {exc}", err=True)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo("Stopping...")
    finally:
        # Stopping takes a while (Serve's controller, Ray's daemons): a second Ctrl-C or SIGTERM, or the
        # one a terminal sends the whole process group, must not cut it short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if started_here:  # our own Ray: the application, its replicas and the dataset actors go with it
                try:
                    ray_serve.shutdown()
                finally:
                    ray.shutdown()
        finally:
            if lite is not None:  # after the processes that used it
                lite.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _web_link(settings: Settings, new_admin, ingress) -> str | None:
    """The one-time web sign-in link, made by the ingress replica (which keeps the link tokens)."""
    from immray.api.startup import client_endpoint
    from immray.web import admin_key_id

    key_id = admin_key_id(settings, new_admin)
    if key_id is None:
        return None
    base = f"http://{client_endpoint(settings.host, settings.port)}"
    return ingress.sign_in_link.remote(base, key_id).result(timeout_s=30)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option(
    "--address",
    help="The Ray to read: host:port of its GCS, auto, ray://... or a dashboard URL http://host:8265 "
    "(default: IMMRAY_RAY_ADDRESS / RAY_ADDRESS, else the Ray running on this machine).",
)
@click.option("--namespace", help="The Ray namespace of the dataset actors (default: IMMRAY_RAY_NAMESPACE).")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=2.0,
    show_default=True,
    help="Seconds to wait for Ray and for each dataset actor's answer.",
)
@_DATA_DIR
def status(
    as_json: bool, address: str | None, namespace: str | None, timeout: float, data_dir: Path | None
) -> None:
    """What the deployment is doing: the Ray cluster, the Serve application's replicas, the dataset actors
    and what they run, the tasks running and waiting, the files pending analysis.

    Exits 1 when Ray or the database cannot be read (what could be read is still shown).
    """
    import json

    from immray.serve.status import gather_status

    settings = _settings(data_dir)
    found = gather_status(
        settings, address=address or settings.ray_address, namespace=namespace, timeout=timeout
    )
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2, default=str))
    else:
        for line in _status_lines(found):
            click.echo(line)
    if not found.complete:
        click.get_current_context().exit(1)


def _status_lines(found) -> list[str]:
    lines = _ray_lines(found)
    if found.store_error:
        lines.append(f"Store unreadable: {found.store_error}")
        return lines
    lines.append(f"Tasks: {len(found.running_tasks)} running, {len(found.waiting_tasks)} waiting")
    for task in found.running_tasks:
        late = (
            " (lease expired: its runner is gone; the sweeper sends it again)" if task.lease_expired else ""
        )
        progress = f"{task.progress}%  attempt {task.attempt}"
        lines.append(f"  {task.task_id}  {_where(task)}  {progress}  on {task.owner}{late}")
    shown = 20
    for task in found.waiting_tasks[:shown]:
        lines.append(f"  {task.task_id}  {_where(task)}  waiting  ({task.attempt} run(s) cut short)")
    if len(found.waiting_tasks) > shown:
        lines.append(f"  ... and {len(found.waiting_tasks) - shown} more waiting (--json lists them all)")
    lines.append(f"Files pending analysis: {sum(pending.files for pending in found.pending_files)}")
    lines += [f"  {pending.project}/{pending.dataset}: {pending.files}" for pending in found.pending_files]
    return lines


def _ray_lines(found) -> list[str]:
    if found.ray is None:
        return [f"Ray unreachable: {found.ray_error}"]
    cluster = found.ray

    def amount(total: float, available: float | None) -> str:
        return f"{total:g}" + ("" if available is None else f" ({available:g} available)")

    cpus, gpus = amount(cluster.cpus, cluster.cpus_available), amount(cluster.gpus, cluster.gpus_available)
    lines = [f"Ray at {cluster.address}: {cluster.nodes_alive} node(s) alive, CPUs {cpus}, GPUs {gpus}"]
    if found.serve_error:
        lines.append(f"Serve: cannot read its status: {found.serve_error}")
    elif not found.serve_apps:
        lines.append("Serve: no application deployed")
    for app in found.serve_apps:
        lines.append(
            f"Serve application {app.name}: {app.status}" + (f" ({app.message})" if app.message else "")
        )
        for deployment in app.deployments:
            replicas = ", ".join(f"{count} {state}" for state, count in deployment.replicas.items()) or "none"
            note = f" ({deployment.message})" if deployment.message else ""
            lines.append(f"  {deployment.name}: {deployment.status}, replicas {replicas}{note}")
    actors = found.dataset_actors
    count = len(actors) or "none (each exits when idle; its dataset's next task makes it again)"
    lines.append(f"Dataset actors (namespace {found.namespace}): {count}")
    for actor in actors:
        if actor.running is not None:
            doing = f"running {', '.join(actor.running)}" if actor.running else "idle"
            if actor.queued:
                doing += f"; queued {', '.join(actor.queued)}"
        elif not found.actors_asked:
            doing = "not asked (read through the dashboard; give the GCS address to see what it runs)"
        else:
            doing = f"no answer: {actor.error}" if actor.error else ""  # not alive: not asked
        restarts = f"  restarted {actor.restarts}x" if actor.restarts else ""
        lines.append(f"  {actor.name}  {actor.state}  on {actor.node or '?'}{restarts}  {doing}".rstrip())
    return lines


def _where(task) -> str:
    return f"{task.project}/{task.dataset}" if task.dataset else task.project


@main.group()
@_DATA_DIR
@click.pass_context
def keys(context: click.Context, data_dir: Path | None) -> None:
    """Access keys of the API server, straight in its database (the server need not run).

    A revoked key fails every request with InvalidAccessKeyId.NotFound, as an unknown key does.
    """
    context.obj = _settings(data_dir)


def _open_keys_database(settings: Settings) -> Database:
    from immray.api.startup import StartupError, open_database

    try:
        return open_database(settings)[0]
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


def _key_policy(
    policy: str | None, datasets: tuple[str, ...], projects: tuple[str, ...], admin: bool
) -> dict:
    """One policy document from --policy (a file or JSON text) and the presets."""
    import json

    from immray import policy as policies

    statements: list[dict] = []
    if admin:
        statements += policies.ADMIN_POLICY["Statement"]
    for project in projects:
        statements += policies.project_statements(_policy_name(project, "--allow-project"))
    for pair in datasets:
        project, slash, dataset = pair.partition("/")
        if not slash:
            raise click.BadParameter(f"{pair!r}: write PROJECT/DATASET", param_hint="--allow-dataset")
        statements += policies.dataset_statements(
            _policy_name(project, "--allow-dataset"), _policy_name(dataset, "--allow-dataset")
        )
    if policy is not None:
        text = policy
        if not policy.lstrip().startswith("{"):
            try:
                text = Path(policy).read_text(encoding="utf-8")
            except OSError as exc:
                raise click.BadParameter(
                    f"cannot read {policy}: {exc.strerror}", param_hint="--policy"
                ) from None
        try:
            parsed = policies.parse_policy(text)
        except policies.PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from None
        statements += json.loads(json.dumps(parsed.document["Statement"]))
    if not statements:
        raise click.UsageError(
            "Say what the key may do: --policy, --allow-dataset, --allow-project or --admin."
        )
    document = policies.document(*statements)
    try:
        policies.parse_policy(document)
    except policies.PolicyError as exc:
        raise click.BadParameter(str(exc)) from None
    return document


def _policy_name(name: str, option: str) -> str:
    """A project or dataset name for a preset; ``*`` and ``?`` wildcards are allowed."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_*?-]{1,128}", name):
        raise click.BadParameter(f"{name!r} is not a project or dataset name", param_hint=option)
    return name


@keys.command("create")
@click.option("--policy", help="Policy document: a JSON file, or the JSON text itself.")
@click.option("--allow-dataset", "datasets", multiple=True, metavar="P/D", help="Full use of dataset D of P.")
@click.option("--allow-project", "projects", multiple=True, metavar="P", help="Full use of project P.")
@click.option("--admin", is_flag=True, help="Every action on every resource (imm:* on *).")
@click.option("--description", help="What the key is for (shown by `keys list`).")
@click.option("--json", "as_json", is_flag=True, help="Print the key as JSON.")
@click.pass_obj
def keys_create(
    settings: Settings,
    policy: str | None,
    datasets: tuple[str, ...],
    projects: tuple[str, ...],
    admin: bool,
    description: str | None,
    as_json: bool,
) -> None:
    """Create a key; its secret is printed this once. Presets and --policy add up."""
    import json

    from immray.protocol.errors import ImmError
    from immray.services import access_keys

    document = _key_policy(policy, datasets, projects, admin)
    db = _open_keys_database(settings)
    try:
        key = access_keys.create_key(db, document, description=description, is_admin=admin)
    except ImmError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        db.close()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "AccessKeyId": key.info.access_key_id,
                    "AccessKeySecret": key.secret,
                    "Description": key.info.description,
                    "Policy": key.info.policy,
                },
                indent=2,
            )
        )
        return
    click.echo(f"AccessKeyId:     {key.info.access_key_id}")
    click.echo(f"AccessKeySecret: {key.secret}")
    click.echo("The secret is shown this once; store it now.")
    click.echo(f"Policy: {json.dumps(key.info.policy)}")


@keys.command("list")
@click.option("--active", is_flag=True, help="Only keys that are not revoked.")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as JSON (never their secrets).")
@click.pass_obj
def keys_list(settings: Settings, active: bool, as_json: bool) -> None:
    """The keys with their policies; secrets are never shown."""
    import json

    from immray.protocol.times import format_time
    from immray.services import access_keys

    db = _open_keys_database(settings)
    try:
        found = access_keys.list_keys(db, include_revoked=not active)
    finally:
        db.close()
    rows = [
        {
            "AccessKeyId": key.access_key_id,
            "Status": "active" if key.active else "revoked",
            "Admin": key.is_admin,
            "CreateTime": format_time(key.created_at),
            "RevokeTime": format_time(key.revoked_at) if key.revoked_at else None,
            "Description": key.description,
            "Policy": key.policy,
        }
        for key in found
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No access keys yet: `immray serve` creates the admin key on first start.")
        return
    for row in rows:
        flags = row["Status"] + (", admin" if row["Admin"] else "")
        click.echo(
            f"{row['AccessKeyId']}  {flags}  created {row['CreateTime']}  {row['Description'] or ''}".rstrip()
        )
        click.echo(f"    policy: {json.dumps(row['Policy'])}")


@keys.command("revoke")
@click.argument("access_key_id")
@click.pass_obj
def keys_revoke(settings: Settings, access_key_id: str) -> None:
    """Revoke a key: its next request fails with InvalidAccessKeyId.NotFound, on every server."""
    from immray.protocol.errors import ImmError
    from immray.services import access_keys

    db = _open_keys_database(settings)
    try:
        _, changed = access_keys.revoke_key(db, access_key_id)
    except ImmError:
        raise click.ClickException(f"There is no access key {access_key_id}.") from None
    finally:
        db.close()
    click.echo(f"Revoked {access_key_id}." if changed else f"{access_key_id} was already revoked.")


# --- commands that call a running server -----------------------------------------------------------

_ENDPOINT = click.option(
    "--endpoint", metavar="HOST:PORT", help="The server to call (default: the one the saved key belongs to)."
)


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--project", default="immray", show_default=True, help="Project (created if missing).")
@click.option("--dataset", default="photos", show_default=True, help="Dataset (created if missing).")
@click.option(
    "--batch-size", type=click.IntRange(1, 100), default=100, show_default=True, help="Files per request."
)
@click.option("--no-wait", is_flag=True, help="Return once the files are submitted.")
@click.option("--timeout", type=click.FloatRange(min=0), help="Stop waiting after this many seconds.")
@click.option(
    "--watch",
    is_flag=True,
    help="Bind FOLDER to the dataset: the server keeps it in sync (new, changed, deleted photos) and, "
    "clustered (AutoClustering). Shows the sync until Ctrl-C (or --timeout); the binding stays.",
)
@click.option(
    "--no-auto-cluster", is_flag=True, help="With --watch: leave the dataset's AutoClustering as is."
)
@_ENDPOINT
@_DATA_DIR
def index(
    folder: Path,
    project: str,
    dataset: str,
    batch_size: int,
    no_wait: bool,
    timeout: float | None,
    watch: bool,
    no_auto_cluster: bool,
    endpoint: str | None,
    data_dir: Path | None,
) -> None:
    """Index every photo under FOLDER into a dataset of the running server, and wait for the analysis.

    The server reads the files itself: FOLDER must be under one of its roots (`immray serve --root`).
    Exits non-zero when a photo failed (each is listed with its reason) or is still pending.
    """
    if watch:
        _watch_folder(folder, project, dataset, timeout, not no_auto_cluster, endpoint, data_dir)
        return
    from tqdm import tqdm

    from immray.client import ClientError, connect
    from immray.folder_index import index_folder

    settings = _settings(data_dir)
    bars: list[tqdm] = []

    def on_found(count: int):
        click.echo(f"{count} photo(s) under {folder}", err=True)
        sent = tqdm(total=count, desc="submitted", unit="photo", file=sys.stderr, disable=count == 0)
        done = tqdm(
            total=count, desc="analysed ", unit="photo", file=sys.stderr, disable=count == 0 or no_wait
        )
        bars.extend([sent, done])
        return sent.update, done.update

    try:
        with connect(settings, endpoint=endpoint) as client:
            summary = index_folder(
                client,
                folder,
                project,
                dataset,
                batch_size=batch_size,
                on_found=on_found,
                wait_for_analysis=not no_wait,
                timeout=timeout,
            )
    except ClientError as exc:
        hint = ""
        if "allowed root" in str(exc):
            hint = f" (the server reads the files itself: start it with --root {folder.absolute()} or above)"
        raise click.ClickException(f"{exc}{hint}") from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; the server goes on analysing what it was sent") from None
    finally:
        for bar in bars:
            bar.close()
    click.echo(
        f"{project}/{dataset}: {summary.photos} photo(s), {summary.indexed} indexed, {len(summary.failed)} "
        f"failed, {summary.pending} pending; {summary.faces} face(s) found in {summary.seconds:.1f} s"
    )
    for uri, reason in sorted(summary.failed.items()):
        click.echo(f"  failed: {uri}: {reason}")
    if (summary.failed or summary.pending) and not no_wait:
        click.get_current_context().exit(1)


def _watch_folder(
    folder: Path,
    project: str,
    dataset: str,
    timeout: float | None,
    auto_cluster: bool,
    endpoint: str | None,
    data_dir: Path | None,
) -> None:
    """`index --watch`: a progress bar over the folder's photos while the server syncs them."""
    from tqdm import tqdm

    from immray.client import ClientError, connect
    from immray.folder_watch import follow

    bar = tqdm(total=0, desc="FullScanning", unit="photo", file=sys.stderr)
    synced = [False]

    def on_status(status) -> None:
        bar.total = status.photos
        bar.n = status.photos - status.pending
        bar.set_description(status.phase or status.state)
        bar.set_postfix_str(f"{status.state}{': ' + status.reason if status.reason else ''}", refresh=False)
        bar.refresh()
        if status.synced and not synced[0]:
            bar.write(
                f"in sync: {status.photos} photo(s), {status.indexed} indexed, {len(status.failed)} failed; "
                f"{status.faces} face(s)",
                file=sys.stderr,
            )
        synced[0] = status.synced

    click.echo(f"watching {folder} -> {project}/{dataset} (Ctrl-C stops watching; the server keeps syncing)")
    last, deleted = None, False
    try:
        with connect(_settings(data_dir), endpoint=endpoint) as client:
            last, deleted = follow(
                client,
                folder,
                project,
                dataset,
                on_status=on_status,
                timeout=timeout,
                auto_cluster=auto_cluster,
            )
    except ClientError as exc:
        hint = ""
        if "allowed root" in str(exc):
            hint = f" (the server reads the folder itself: start it with --root {folder.absolute()} or above)"
        raise click.ClickException(f"{exc}{hint}") from None
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
    if deleted:
        click.echo("the binding was deleted: the folder is no longer synced")
    if last is None:
        return
    click.echo(
        f"{project}/{dataset} <- {last.uri}: {last.state}, {last.phase}; {last.photos} photo(s), "
        f"{last.indexed} indexed, {len(last.failed)} failed, {last.pending} pending; {last.faces} face(s)"
    )
    for uri, reason in sorted(last.failed.items()):
        click.echo(f"  failed: {uri}: {reason}")


# --- people: clustering and what it found (clients of a running server, signed with the saved key) ---

_PROJECT = click.option("--project", default="immray", show_default=True, help="The IMM project.")
_DATASET = click.option("--dataset", default="photos", show_default=True, help="The dataset in it.")


def _client(data_dir: Path | None, endpoint: str | None):
    from immray.client import ClientError, connect

    try:
        return connect(_settings(data_dir), endpoint=endpoint)
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


def _api_call(call):
    """Run ``call()``; a refused request or an unreachable server becomes a one-line error."""
    from immray.client import ApiError, ClientError

    try:
        return call()
    except ApiError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    except ClientError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@_PROJECT
@_DATASET
@_ENDPOINT
@_DATA_DIR
@click.option(
    "--timeout", type=click.FloatRange(min=1), help="Give up following the task after this many seconds."
)
def cluster(
    project: str, dataset: str, endpoint: str | None, data_dir: Path | None, timeout: float | None
) -> None:
    """Cluster the faces indexed, moved or deleted since the last run, and follow the task to its end."""
    from tqdm import tqdm

    from immray import people_client

    with _client(data_dir, endpoint) as client, tqdm(total=100, desc="cluster", unit="%") as bar:

        def advance(percent: int) -> None:
            bar.update(max(0, percent - bar.n))

        end = _api_call(
            lambda: people_client.run_clustering(
                client, project, dataset, on_progress=advance, timeout=timeout
            )
        )
    if end.status != "Succeeded":
        raise click.ClickException(f"task {end.task_id} {end.status}: {end.code}: {end.message}")
    click.echo(f"Clustered {project}/{dataset} in {end.seconds:.1f} s (task {end.task_id}).")


@main.command()
@_PROJECT
@_DATASET
@_ENDPOINT
@_DATA_DIR
@click.option(
    "--sort",
    type=click.Choice(sorted(["photos", "faces", "name", "created"])),
    default="photos",
    show_default=True,
)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many people.")
def people(
    project: str, dataset: str, endpoint: str | None, data_dir: Path | None, sort: str, limit: int | None
) -> None:
    """A table of the people found: name, faces, photos and the photo their cover face comes from."""
    import itertools

    from rich.console import Console
    from rich.table import Table

    from immray import people_client

    with _client(data_dir, endpoint) as client:
        found = _api_call(
            lambda: list(itertools.islice(people_client.people(client, project, dataset, sort=sort), limit))
        )
    table = Table(title=f"People of {project}/{dataset}")
    for column, justify in (
        ("Name", "left"),
        ("Faces", "right"),
        ("Photos", "right"),
        ("Cover", "left"),
        ("Id", "left"),
    ):
        table.add_column(column, justify=justify)
    for person in found:
        table.add_row(
            person.name or "-", str(person.faces), str(person.photos), person.cover_uri, person.cluster_id
        )
    Console(width=200 if not sys.stdout.isatty() else None).print(table)
    click.echo(f"{len(found)} people")


@main.command()
@_PROJECT
@_DATASET
@_ENDPOINT
@_DATA_DIR
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="A file (default: stdout)."
)
def export(
    project: str, dataset: str, endpoint: str | None, data_dir: Path | None, fmt: str, output: Path | None
) -> None:
    """Export the people and their photos as JSON (one object per person) or CSV (one row per photo)."""
    from tqdm import tqdm

    from immray import people_client

    with (
        _client(data_dir, endpoint) as client,
        tqdm(desc="export", unit="person", disable=output is None) as bar,
    ):
        found = _api_call(
            lambda: people_client.people_with_photos(
                client,
                project,
                dataset,
                on_count=lambda count: setattr(bar, "total", count),
                on_person=lambda: bar.update(1),
            )
        )
    text = people_client.to_json(project, dataset, found) if fmt == "json" else people_client.to_csv(found)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"{len(found)} people written to {output}", err=True)


# --- face vectors in Milvus ------------------------------------------------------------------------


@main.group()
@_DATA_DIR
@click.pass_context
def vectors(context: click.Context, data_dir: Path | None) -> None:
    """The face vectors in Milvus against the faces in the database (the record).

    With a running `immray serve` on the embedded milvus-lite, the commands connect to its server;
    otherwise they open milvus-lite themselves (or IMMRAY_MILVUS_URI's server).
    """
    context.obj = _settings(data_dir)


def _vector_store(settings: Settings):
    from immray.vectors import open_store

    try:
        store = open_store(settings)
        store.collections()  # a server's client connects on its first call: say now if it cannot
        return store
    except Exception as exc:  # unreachable server, a file another process holds
        detail = getattr(exc, "detail", "") or exc
        raise click.ClickException(f"cannot reach Milvus: {detail}") from None


@vectors.command("check")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dataset.")
@click.option("--no-compare", is_flag=True, help="Only look for missing and orphan vectors (faster).")
@click.pass_obj
def vectors_check(settings: Settings, as_json: bool, no_compare: bool) -> None:
    """Report drift: faces missing from Milvus, stale vectors, vectors of faces the store has not (exit 1
    when any)."""
    import json

    from immray.vectors.sync import check

    db = _open_keys_database(settings)
    try:
        reports = check(db, _vector_store(settings), compare_vectors=not no_compare)
    finally:
        db.close()
    for r in reports:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "dataset_id": r.dataset_id,
                        "dataset": r.name,
                        "faces": r.faces,
                        "vectors": r.vectors,
                        "missing": r.missing,
                        "stale": r.stale,
                        "orphans": r.orphans,
                    }
                )
            )
        else:
            state = "ok" if r.clean else (
                f"{len(r.missing)} missing, {len(r.stale)} stale, {len(r.orphans)} orphan(s)"
            )  # fmt: skip
            click.echo(f"{r.name} (id {r.dataset_id}): {r.faces} faces, {r.vectors} vectors: {state}")
    if any(not r.clean for r in reports):
        raise SystemExit(1)


@vectors.command("rebuild")
@click.option("--dataset", "target", required=True, metavar="PROJECT/DATASET", help="The dataset to rebuild.")
@click.pass_obj
def vectors_rebuild(settings: Settings, target: str) -> None:
    """Re-create a dataset's vectors in Milvus from the faces in the database."""
    from sqlalchemy import select

    from immray.store import Dataset, Project
    from immray.vectors.sync import rebuild

    project, _, name = target.partition("/")
    if not project or not name:
        raise click.ClickException("--dataset must be PROJECT/DATASET")
    db = _open_keys_database(settings)
    try:
        with db.read() as session:
            dataset_id = session.scalar(
                select(Dataset.id).join(Project).where(Project.name == project, Dataset.name == name)
            )
        if dataset_id is None:
            raise click.ClickException(f"no dataset {target}")
        deleted, written = rebuild(db, _vector_store(settings), dataset_id)
    finally:
        db.close()
    click.echo(f"{target}: {deleted} vector(s) deleted, {written} written from the database")


_DEFAULT_DASHBOARD = "http://127.0.0.1:8265"


@main.command()
@click.argument("location", required=False)
@click.option("--dataset", metavar="P/D", help="project/dataset the photos go to (created if missing).")
@click.option(
    "--address",
    envvar="RAY_API_SERVER_ADDRESS",
    default=_DEFAULT_DASHBOARD,
    show_default=True,
    help="The Ray dashboard of the cluster (its job API); RAY_API_SERVER_ADDRESS.",
)
@click.option(
    "--follow", is_flag=True, help="Show the job's progress until it ends; exit 1 unless it succeeded."
)
@click.option("--list", "list_jobs", is_flag=True, help="List the backfills the cluster ran or runs.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The Serve config whose `backfill` args (else FaceAnalysis deployment) size the actor pool "
    "(default: configs/serve.local.yaml).",
)
@click.option("--actors", help="Override the pool: a size (2) or a range (1-4).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Override the photos per model batch.")
@click.option("--num-cpus", type=click.FloatRange(min=0), help="Override the CPUs per actor.")
@click.option("--num-gpus", type=click.FloatRange(min=0), help="Override the GPUs per actor.")
@click.option(
    "--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="An environment variable of the job."
)
@click.option("--python", default="python", show_default=True, help="The Python of the cluster's nodes.")
@click.option("--notify-topic", help="Tell this topic (IMMRAY_NOTIFY_TOPICS) when each batch of files ends.")
def backfill(
    location: str | None,
    dataset: str | None,
    address: str,
    follow: bool,
    list_jobs: bool,
    config_path: Path | None,
    actors: str | None,
    batch_size: int | None,
    num_cpus: float | None,
    num_gpus: float | None,
    env_pairs: tuple[str, ...],
    python: str,
    notify_topic: str | None,
) -> None:
    """Index every photo under LOCATION (a folder of the cluster's nodes, or s3://bucket/prefix/) into a
    dataset, as a Ray job on the cluster: Ray Data runs the face models in an actor pool, the photos are
    stored as the API stores them, and one clustering task starts at the end. Submitted again, it skips
    the photos indexed and unchanged. The job's settings are the cluster nodes' IMMRAY_* environment
    (plus --env).
    """
    from immray.jobs import backfill_client as jobs

    try:
        if list_jobs:
            _list_backfills(jobs.list_backfills(address))
            return
        if not location or not dataset:
            raise click.UsageError("give LOCATION and --dataset P/D (or --list)")
        pool = _backfill_pool(config_path, actors, batch_size, num_cpus, num_gpus)
        env = jobs.parse_env(env_pairs)
        if "://" not in location:  # the job runs elsewhere: a path travels as an absolute file:// URI
            location = Path(os.path.abspath(location)).as_uri() + "/"
        submission_id = jobs.submit(
            address, location, dataset, pool, env=env, python=python, notify_topic=notify_topic
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except jobs.BackfillClientError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"submitted {submission_id}: {location} -> {dataset}")
    click.echo(f"  logs: ray job logs {submission_id} --address {address}")
    if not follow:
        return

    def show(status: str, progress) -> None:
        click.echo(f"{status}: {progress.summary()}" if progress else status)

    final = jobs.follow(address, submission_id, show)
    if final != "SUCCEEDED":
        click.echo(f"{submission_id} ended {final}", err=True)
        click.get_current_context().exit(1)


def _backfill_pool(config_path, actors, batch_size, num_cpus, num_gpus):
    import yaml

    from immray.jobs.backfill_pool import parse_actors, pool_from_config

    path = config_path or Path(__file__).resolve().parents[1] / "configs" / "serve.local.yaml"
    config = (
        yaml.safe_load(path.read_text()) if path.exists() else {"applications": [{"import_path": "immray."}]}
    )
    low, high = parse_actors(actors) if actors else (None, None)
    return pool_from_config(
        config, min_actors=low, max_actors=high, batch_size=batch_size, num_cpus=num_cpus, num_gpus=num_gpus
    )


def _list_backfills(found) -> None:
    if not found:
        click.echo("no backfill")
        return
    for job in found:
        began = job.start_time.strftime("%Y-%m-%d %H:%M:%S") if job.start_time else "-"
        ended = job.end_time.strftime("%H:%M:%S") if job.end_time else "-"
        click.echo(
            f"{job.submission_id}  {job.status:<9} {began} -> {ended}  {job.location} -> {job.dataset}"
        )


if __name__ == "__main__":
    main()
