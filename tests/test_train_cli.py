"""``gvd train`` turns its options into TrainConfig overrides (no training here)."""

from __future__ import annotations

import click
import pytest

from edge.metadata import CELLS


def test_only_given_options_become_overrides():
    from train.cli import _overrides

    given = {"seed": 3, "epochs": None, "units": 16, "dropout": None, "vad": False, "window_hop_seconds": None,
             "augment_variants": 0, "balance": None}
    assert _overrides(given) == {"seed": 3, "models": {cell: {"units": 16} for cell in CELLS},
                                 "features": {"vad": False}, "augment": {"variants": 0}}
    assert _overrides({"seed": None, "units": None}) == {}


def test_cells_are_checked_against_the_core_list():
    from train.cli import _cells

    assert _cells(" GRU, lstm") == ("gru", "lstm")
    with pytest.raises(click.BadParameter, match="cells must be a comma list of lstm, gru, rnn"):
        _cells("lstm,tcn")
