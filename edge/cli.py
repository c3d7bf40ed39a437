"""The ``gvd`` command: a click group whose subcommands are imported only when used.

Runtime subcommands live in ``edge``; ``train``, ``data`` and ``export`` are plugins registered by
the training side through the ``gvd.commands`` entry-point group, so this module never imports them
(data flows train -> export -> models -> edge). ``gvd --help`` lists every command from the table
below without importing any of them, so it stays fast and light on the base install.
"""

from __future__ import annotations

import sys
from importlib import import_module

import click

from . import __version__, startup
from .errors import GvdError

# name -> "module:attribute" of a click command; imported on first use.
RUNTIME_COMMANDS = {
    "predict": "edge.commands:predict",
    "listen": "edge.commands:listen",
    "devices": "edge.commands:devices",
    "models": "edge.commands:models",
    "serve": "edge.serve.app:serve",
}
# Commands that end start-up themselves (edge.startup.done) once their model is loaded; every other
# command ends it as soon as it is chosen.
LOADS_ITS_MODEL = {"predict", "listen"}


# What ``gvd --help`` shows for each command, so that listing them imports none of them; a test
# checks that every entry equals the command's own first sentence.
COMMAND_HELP = {
    "bench": "Latency, real-time factor, cost against clip length, batch throughput, cold start, memory and "
             "streaming CPU of gvd, each next to the original pipeline measured in the same run.",
    "data": "Inspect training data.",
    "devices": "List audio input devices (extra [mic]); '*' marks the default.",
    "export": "Export trained models to small, self-describing ONNX files.",
    "listen": "Live detection from a microphone (extra [mic]), or from a file with --input.",
    "models": "The shipped models, their metrics, and which one is the default.",
    "predict": "Classify audio files, folders (searched recursively) or '-' (an audio file on standard input).",
    "serve": "HTTP API (/predict, /feedback, /health, /models) and the kiosk page.",
    "train": "Train LSTM, RNN and GRU voice-gender models and evaluate them on unseen speakers and corpora.",
}


def _load(target: str) -> click.Command:
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)


class _LazyGroup(click.Group):
    """Lists runtime commands and entry-point plugins without importing them until they are needed."""

    def _targets(self) -> dict[str, str]:
        # importlib.metadata costs 4 MB and 35 ms: only read the entry points when a plugin is wanted.
        from importlib.metadata import entry_points

        targets = {ep.name: ep.value for ep in entry_points(group="gvd.commands")}
        targets.update(RUNTIME_COMMANDS)
        return targets

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._targets()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is not None:
            return command
        target = RUNTIME_COMMANDS.get(name) or self._targets().get(name)
        if target is None:
            return None
        try:
            command = _load(target)
        except ImportError as exc:
            return _unavailable(name, exc)
        if name not in LOADS_ITS_MODEL:
            startup.done()
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        targets = self._targets()
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows = []
        for name in names:
            text = COMMAND_HELP.get(name, f"A plugin ({targets.get(name, '?')}).")
            rows.append((name, click.Command(name, help=text).get_short_help_str(limit)))  # click's truncation
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _unavailable(name: str, exc: ImportError) -> click.Command:
    """Stand-in for a command that cannot load, so that the rest of the CLI keeps working."""

    @click.command(name, help=f"(unavailable: {exc})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def command(args: tuple[str, ...]) -> None:
        raise click.ClickException(f"'gvd {name}' could not be loaded ({exc}); reinstall gvd")

    return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gvd")
def cli() -> None:
    """gvd: tell a female from a male voice, on the device."""


def main() -> None:
    try:
        cli(standalone_mode=True)
    except GvdError as exc:  # errors raised outside click's own handling
        click.echo(f"gvd: error: {exc}", err=True)
        sys.exit(2)
    finally:
        startup.done()  # a command that failed before it loaded its model
