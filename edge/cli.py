"""The ``gvd`` command. Runtime subcommands live here; training-side ones are plugins.

``train`` and ``export`` register their subcommands through the ``gvd.commands`` entry-point
group, so this module never imports them (data flows train -> export -> models -> edge) and
``gvd --help`` stays fast on the base install.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click

from . import __version__
from .errors import GvdError


class _PluginGroup(click.Group):
    """A click group that also lists commands registered by other packages, loaded on demand."""

    def _plugins(self) -> dict:
        return {ep.name: ep for ep in entry_points(group="gvd.commands")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugins()))

    def get_command(self, ctx: click.Context, name: str):
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        plugin = self._plugins().get(name)
        if plugin is None:
            return None
        try:
            return plugin.load()
        except ImportError as exc:
            return _unavailable(name, exc)


def _unavailable(name: str, exc: ImportError) -> click.Command:
    """Stand-in for a plugin that cannot load, so that the rest of the CLI keeps working."""

    @click.command(name, help=f"(unavailable: {exc})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'gvd {name}' could not be loaded ({exc}); reinstall gvd")

    return command


@click.group(cls=_PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gvd")
def cli() -> None:
    """gvd: tell a female from a male voice, on the device."""


def main() -> None:
    try:
        cli(standalone_mode=True)
    except GvdError as exc:  # errors raised outside click's own handling
        click.echo(f"gvd: error: {exc}", err=True)
        sys.exit(2)
