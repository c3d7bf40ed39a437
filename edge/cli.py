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
        return plugin.load() if plugin is not None else None


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
