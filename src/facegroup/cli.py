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
    raise click.ClickException("not implemented yet")


if __name__ == "__main__":
    main()
