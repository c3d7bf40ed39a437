"""PNG charts of the report. matplotlib comes with the ``[bench]`` extra; without it there are no charts."""

from __future__ import annotations

from pathlib import Path

from .report import Report, SideResult, stage_names

TARGET_MS = 200.0  # the project's latency budget per clip


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _sides(report: Report) -> list[SideResult]:
    return report.gvd + ([report.original] if report.original else [])


def stages_chart(report: Report, path: Path) -> Path:
    """Per-stage and end-to-end p50 per clip, every side, on a log axis with the 200 ms budget."""
    plt = _pyplot()
    sides = _sides(report)
    series = stage_names(sides) + ["end to end"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(sides) + 3), 4.5))
    width = 0.8 / len(series)
    for i, name in enumerate(series):
        values = []
        for side in sides:
            p = side.e2e_ms if name == "end to end" else side.stage(name)
            # A stage that takes no time (no resampling of 16 kHz input) gets no bar on a log axis.
            values.append(p.p50 if p is not None and p.p50 > 0 else float("nan"))
        positions = [x + (i - len(series) / 2 + 0.5) * width for x in range(len(sides))]
        ax.bar(positions, values, width, label=name, color="black" if name == "end to end" else None)
    ax.axhline(TARGET_MS, color="red", linestyle="--", label="200 ms budget")
    ax.set_yscale("log")
    ax.set_ylabel("ms per clip (p50, log scale)")
    ax.set_xticks(range(len(sides)), [s.name for s in sides], fontsize=8)
    ax.set_title(f"Latency per stage, {report.machine.cpu} ({report.machine.cores} cores)", fontsize=10)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    return _save(fig, plt, path)


def lengths_chart(report: Report, path: Path) -> Path:
    """Cost per audio second against clip length, every side, log-log: flat means linear in length."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for side in _sides(report):
        costs = sorted(side.lengths, key=lambda c: c.seconds)
        if costs:
            ax.plot([c.seconds for c in costs], [c.ms_per_audio_second for c in costs], marker="o", label=side.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lengths = report.settings.lengths_seconds
    ax.set_xticks(lengths, [_length_label(s) for s in lengths])
    ax.tick_params(axis="x", which="minor", bottom=False, labelbottom=False)
    ax.set_xlabel("clip length (log scale)")
    ax.set_ylabel("ms per second of audio (log scale)")
    ax.set_title("Cost against clip length", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def _length_label(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
