"""The report as text: a terminal table and ``bench.md``."""

from __future__ import annotations

from .report import Report, SideResult, stage_names


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.{digits}f}{unit}"


def _sides(report: Report) -> list[SideResult]:
    return report.gvd + ([report.original] if report.original else [])


def side_columns(stages: list[str]) -> list[str]:
    return ["pipeline", "thr", "e2e p50", "p90", "p99", *stages, "RTF", "cold start", "peak RSS", "stream CPU",
            "load", "size"]


def side_cells(side: SideResult, stage_columns: list[str]) -> list[str]:
    stages = [fmt(p.p50 if (p := side.stage(s)) else None, 2) for s in stage_columns]
    return [side.name, str(side.threads), fmt(side.e2e_ms.p50, 2, " ms"), fmt(side.e2e_ms.p90, 2),
            fmt(side.e2e_ms.p99, 2), *stages, fmt(side.realtime_factor, 0, "x"), fmt(side.cold_start_ms, 0, " ms"),
            fmt(side.peak_rss_mb, 0, " MB"), fmt(side.stream_cpu_percent, 2, " %"), fmt(side.load_ms, 1, " ms"),
            fmt(side.model_size_kb, 0, " kB")]


def _comparison_rows(report: Report) -> list[list[str]]:
    return [[r.figure, r.unit, fmt(r.gvd, 2), fmt(r.original, 2), fmt(r.times_better, 1, "x")]
            for r in report.comparison]


def _goal_rows(report: Report) -> list[list[str]]:
    verdicts = {True: "met", False: "MISSED", None: "not measured"}
    return [[g.goal, g.target, fmt(g.measured, 2), verdicts[g.met]] for g in report.goals]


def _length_rows(report: Report) -> list[list[str]]:
    rows = []
    for seconds in report.settings.lengths_seconds:
        cells = [f"{seconds:g} s"]
        for side in _sides(report):
            cost = side.length(seconds)
            cells += [fmt(cost.ms_per_clip if cost else None, 1), fmt(cost.ms_per_audio_second if cost else None, 2)]
        rows.append(cells)
    return rows


def _length_header(report: Report) -> list[str]:
    header = ["clip length"]
    for side in _sides(report):
        header += [f"{side.name} ms/clip", "ms per audio s"]
    return header


def _throughput_rows(report: Report) -> list[list[str]]:
    rows = []
    for side in _sides(report):
        for t in side.throughput:
            rows.append([side.name, str(t.jobs), str(t.files), fmt(t.audio_seconds, 0), fmt(t.wall_seconds, 2),
                         fmt(t.files_per_second, 1), fmt(t.audio_seconds_per_second, 0, "x")])
    return rows


THROUGHPUT_HEADER = ["pipeline", "jobs", "files", "audio s", "wall s", "files/s", "audio s per s"]


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header] + rows):
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    return ["| " + " | ".join(header) + " |", rule] + ["| " + " | ".join(r) + " |" for r in rows]


def _machine_line(report: Report) -> str:
    m = report.machine
    load = ""
    if m.load_average_start is not None:
        load = (f"; load average (1 min) {m.load_average_start:.1f} at the start, {m.load_average_end or 0.0:.1f} "
                f"at the end on {m.cores} cores (above about 0.5 the figures are inflated by other work)")
    return (f"{m.cpu}, {m.cores} cores ({m.machine}), {m.os}; Python {m.python}, numpy {m.numpy}, "
            f"onnxruntime {m.onnxruntime}, {m.libsndfile}{load}")


def _weights_lines(report: Report) -> list[str]:
    return [f"{side.name}: {side.weights.description} ({side.weights.path}, sha256 {side.weights.sha256[:12]})"
            for side in _sides(report)]


def text(report: Report) -> str:
    lines = [f"gvd bench on {_machine_line(report)}", ""]
    stages = stage_names(_sides(report))
    lines += _text_table(side_columns(stages), [side_cells(s, stages) for s in _sides(report)])
    lines += ["", "gvd against the original, same run:"] + _text_table(
        ["figure", "unit", "gvd", "original", "gvd better by"], _comparison_rows(report))
    lines += ["", "goals:"] + _text_table(["goal", "target", "measured", ""], _goal_rows(report))
    lines += ["", "weights:"] + [f"  {w}" for w in _weights_lines(report)]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def markdown(report: Report, charts: dict[str, str]) -> str:
    s = report.settings
    clips = ", ".join(f"{name} ({sec:g} s)" for name, sec in zip(s.clips, s.clip_seconds, strict=True))
    windows = report.gvd[0].windows_per_clip
    out = [
        "# gvd benchmark", "",
        f"Machine: {_machine_line(report)}.", "",
        f"Clips: {clips}" + (f" ({windows:.1f} analysis windows per clip on average)" if windows else "") + ". "
        f"End to end = file on disk to result, {s.runs} runs per clip after {s.warmup} warm-up runs, "
        f"{s.threads} onnxruntime thread(s); stages are p50 of the detector's own timings (ms). RTF = audio "
        "seconds per CPU second. Cold start = a new `gvd predict --json` process from launch to its first "
        f"result (median of {s.cold_runs}); peak RSS of that process. Stream CPU = CPU time per second of "
        f"audio, feeding a {s.stream_rate // 1000} kHz recording in {s.stream_chunk_seconds:g} s chunks at the "
        "default hop, as % of one core.", "",
    ]
    stages = stage_names(_sides(report))
    out += _md_table(side_columns(stages), [side_cells(side, stages) for side in _sides(report)])
    out += ["", "## gvd against the original pipeline, same run", ""]
    out += _md_table(["figure", "unit", "gvd", "original", "gvd better by"], _comparison_rows(report))
    out += ["", "## Cost against clip length", "",
            f"Clips of each length made of the clips above, one after another ({s.length_clip_format}); median "
            "wall time per clip.", ""]
    out += _md_table(_length_header(report), _length_rows(report))
    if "lengths" in charts:
        out += ["", f"![cost against clip length]({charts['lengths']})"]
    out += ["", "## Batch throughput", "",
            f"`gvd predict --jobs N` over {s.batch_files} files (the clips in turn), from process launch to exit; "
            "the original pipeline in N worker processes the same way.", ""]
    out += _md_table(THROUGHPUT_HEADER, _throughput_rows(report))
    out += ["", "## Goals", ""] + _md_table(["goal", "target", "measured", ""], _goal_rows(report))
    out += ["", "## Weights", ""] + [f"- {w}" for w in _weights_lines(report)]
    if report.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    if "stages" in charts:
        out += ["", f"![per-stage latency]({charts['stages']})"]
    out += ["", f"Reproduce: `{s.command}` (see benchmarks/README.md for the options).", ""]
    return "\n".join(out)
