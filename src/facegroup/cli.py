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
    """Print the faces found in each image as JSON (IMM Figure fields)."""
    raise click.ClickException("not implemented yet")


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
