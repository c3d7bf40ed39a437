"""``gvd models promote|rollback|history``: the model registry from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import GvdError
from .promotion import LabelledClip, Registry, load_holdout
from .promotion import promote as promote_candidate
from .store import read_recent


def _default_registry() -> Path:
    from .services import default_data_dir

    return default_data_dir() / "registry"


def _default_feedback() -> Path:
    from .services import default_feedback_dir

    return default_feedback_dir()


registry_option = click.option("--registry", "registry_dir", type=click.Path(file_okay=False, path_type=Path),
                               default=None, help="The registry folder. [default: $XDG_DATA_HOME/gvd/registry]")


@click.command()
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--holdout", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Held-out CSV: file,label,corpus,speaker (files relative to the CSV).")
@registry_option
@click.option("--feedback-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Its most recent corrections are part of the comparison. [default: $XDG_DATA_HOME/gvd/feedback]")
@click.option("--corrections", default=200, show_default=True, type=click.IntRange(min=0),
              help="How many of the most recent corrections to compare on.")
@click.option("--baseline", default=None,
              help="Model to beat when nothing is promoted yet (shipped name or .onnx). [default: the shipped default]")
@click.option("--json", "as_json", is_flag=True, help="The decision as JSON.")
def promote(candidate: Path, holdout: Path, registry_dir: Path | None, feedback_dir: Path | None, corrections: int,
            baseline: str | None, as_json: bool) -> None:
    """Evaluate CANDIDATE (.onnx) and make it the served model if it is not worse than the current one."""
    from ..model import resolve

    try:
        clips = [LabelledClip(path, c.correct_label, "corrections")
                 for path, c in read_recent(feedback_dir or _default_feedback(), corrections) if path.is_file()]
        if registry_dir is None:  # where the server keeps it: next to its feedback folder
            registry_dir = feedback_dir.resolve().parent / "registry" if feedback_dir else _default_registry()
        decision, version = promote_candidate(candidate.resolve(), Registry(registry_dir),
                                              load_holdout(holdout), resolve(baseline).path, clips,
                                              source=str(candidate.name))
    except GvdError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({**decision.to_dict(), "version": version.name if version else None}))
    else:
        for side, evaluation in (("candidate", decision.candidate), ("current", decision.baseline)):
            if evaluation is not None:
                corr = "-" if evaluation.corrections_accuracy is None else f"{evaluation.corrections_accuracy:.4f}"
                click.echo(f"{side:<9} {evaluation.model:<14} worst corpus {evaluation.worst_corpus} "
                           f"{evaluation.worst_balanced_accuracy:.4f}  corrections ({evaluation.corrections}) {corr}")
        click.echo(f"promoted as {version.name}" if version else "not promoted: " + "; ".join(decision.reasons))
    if version is None:
        raise SystemExit(1)


@click.command()
@registry_option
def rollback(registry_dir: Path | None) -> None:
    """Serve the version that was current before the current one (or the shipped model)."""
    try:
        previous = Registry(registry_dir or _default_registry()).rollback()
    except GvdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("now serving " + (f"promoted-{previous}" if previous else "the shipped model"))


@click.command()
@registry_option
@click.option("--json", "as_json", is_flag=True, help="One JSON event per line.")
def history(registry_dir: Path | None, as_json: bool) -> None:
    """Promotions, refusals and rollbacks, oldest first."""
    try:
        events = Registry(registry_dir or _default_registry()).history()
    except GvdError as exc:
        raise click.ClickException(str(exc)) from exc
    for event in events:
        if as_json:
            click.echo(json.dumps(event))
            continue
        what = event.get("action")
        detail = (f"v{event.get('version')} from {event.get('source')}" if what == "promoted"
                  else f"{event.get('source')}: " + "; ".join(event.get("reasons", [])) if what == "refused"
                  else f"{event.get('from')} -> {event.get('to') or 'shipped'}")
        click.echo(f"{event.get('time')}  {what:<9} {detail}")
