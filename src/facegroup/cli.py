"""The `facegroup` command. Each subcommand is a thin shell over a module that does the work."""

from __future__ import annotations

import click

from facegroup import __version__


@click.group()
@click.version_option(__version__, prog_name="facegroup")
def main() -> None:
    """facegroup: group the faces of a photo collection by person."""


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

    from facegroup.faces import AnalyzerConfig, ImageError, get_analyzer
    from facegroup.settings import get_settings

    settings = get_settings()
    try:
        config = AnalyzerConfig(
            detector=settings.detector,
            max_image_pixels=settings.max_image_pixels,
            detect_max_side=settings.detect_max_side,
            min_face_px=settings.min_face_px,
        )
    except ValueError as exc:
        raise click.ClickException(f"invalid face analysis settings: {exc}") from None
    analyzer = get_analyzer(config)
    failed = 0
    for path in tqdm(paths, desc="analyze", unit="image", disable=True if len(paths) < 2 else None):
        file = Path(path)
        record: dict[str, object] = {"URI": file.absolute().as_uri()}
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


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations to the configured database."""
    from alembic.util import CommandError
    from sqlalchemy.exc import SQLAlchemyError

    from facegroup.settings import get_settings
    from facegroup.store import DatabaseURLError, normalize_url, upgrade

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


if __name__ == "__main__":
    main()
