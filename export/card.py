"""The model card, models/README.md, written from the training records and the export results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.metadata import SPEECH_OUTPUT_NAME

from .manifest import loco_accuracy

# What each shared corpus is and its licence (../shared/data/README.md); counts come from training.json.
CORPUS_NOTES = {
    "indonesian": ("the original project's recordings: Indonesian, phones / WhatsApp (AAC, Opus, MP3)",
                   "collected by the original project's authors; anonymised ids"),
    "ravdess": ("RAVDESS: actors, two English sentences in eight emotions", "CC BY-NC-SA 4.0"),
    "urdu": ("URDU-Dataset: emotional speech from Urdu TV talk shows", "research use"),
    "speechocean762": ("adults reading English, Mandarin first language", "free for any use"),
    "speechocean762_children": ("the same corpus's children, aged 6-15", "free for any use"),
    "baved": ("BAVED: Arabic words at three emotion levels, many devices", "research use (no licence stated)"),
    "tess": ("TESS: two actresses, seven emotions", "CC BY-NC-ND 4.0"),
    "thai_lotus": ("LOTUS: read Thai", "research use (no licence stated)"),
    "thai_class": ("read Thai, a second small set", "research use (no licence stated)"),
    "sanskrit": ("read Sanskrit", "research use (no licence stated)"),
    "hindi_digits": ("Hindi digit triplets", "research use (no licence stated)"),
    "spanish_digits": ("Spanish digit triplets", "research use (no licence stated)"),
    "bangla": ("read Bangla", "research use (no licence stated)"),
    "polish": ("read Polish", "research use (no licence stated)"),
    "persian_cv": ("Common Voice Persian (MP3)", "CC0"),
    "quran": ("Quran recitation, chanted, male only", "research use (no licence stated)"),
    "arctic": ("CMU ARCTIC: two speakers", "free licence of its distributors"),
}


def _corpus_rows(record) -> list[str]:
    rows = []
    for name, c in sorted(record.corpora.items(), key=lambda kv: (kv[1].get("kind") != "adult", kv[0])):
        what, licence = CORPUS_NOTES.get(name, ("non-speech for the speech output" if c.get("kind") == "nonspeech"
                                                else "", "see its source"))
        speakers = "—" if c.get("kind") == "nonspeech" else f"{c['speakers_female']} / {c['speakers_male']}"
        rows.append(f"| `{name}` | {c.get('kind')} | {what} | {speakers} | {c['files']:,} | "
                    f"{c.get('loco_group', name)} | {licence} |")
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _flatten(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(value, path + ".")
        elif isinstance(value, (int, float, str, bool)) and not (isinstance(value, str) and len(value) > 80):
            rows.append((path, value))
    return rows


def _metrics_table(results) -> list[str]:
    """Fallback: one row per numeric metric, one column per float model."""
    floats = [r for r in results if not r.quantized]
    columns = {r.name: dict(_flatten(r.record.metrics)) for r in floats}
    keys: list[str] = []
    for rows in columns.values():
        keys += [k for k in rows if k not in keys]
    if not keys:
        return ["(training.json holds no metrics)"]
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(columns[n].get(key, "")) for n in columns) + " |")
    return lines


def _cell(metrics: dict | None, with_count: bool = True) -> str:
    if not isinstance(metrics, dict) or not isinstance(metrics.get("accuracy"), (int, float)):
        return "n/a"
    text = f"{100 * metrics['accuracy']:.1f}%"
    if isinstance(metrics.get("balanced_accuracy"), (int, float)):
        text += f" (bal. {100 * metrics['balanced_accuracy']:.1f}%)"
    if with_count and isinstance(metrics.get("n_clips"), int):
        text += f", {metrics['n_clips']} clips"
    return text


def _grouped(floats, title: str, lookup, note: str) -> list[str]:
    """A table with one row per group (corpus, format, held-out corpus) and one column per model."""
    groups: list[str] = []
    for r in floats:
        groups += [g for g in (lookup(r.record.metrics) or {}) if g not in groups]
    if not groups:
        return []
    lines = [f"### {title}", "", note, "", "| | " + " | ".join(r.name for r in floats) + " |",
             "|---|" + "---|" * len(floats)]
    for group in groups:
        lines.append(f"| {group} | " + " | ".join(_cell((lookup(r.record.metrics) or {}).get(group))
                                                  for r in floats) + " |")
    return lines + [""]


def _metrics_sections(results) -> list[str]:
    """Clip-level metrics as training measured them: test split overall and per corpus, LOCO, codec check."""
    floats = [r for r in results if not r.quantized]
    if not any(isinstance(r.record.metrics.get("test"), dict) for r in floats):
        return _metrics_table(results)
    lines = ["Clip-level (one decision per recording, speech-weighted mean of its windows), female = positive.", "",
             "### Test split (speakers never seen in training)", "",
             "| | " + " | ".join(r.name for r in floats) + " |", "|---|" + "---|" * len(floats)]
    rows = [("accuracy (balanced), clips", lambda m: _cell(m)),
            ("ROC AUC", lambda m: _fmt(m.get("roc_auc", "n/a"))),
            ("equal error rate", lambda m: _fmt(m.get("eer", "n/a"))),
            ("F1 (female)", lambda m: _fmt(m.get("f1", "n/a"))),
            ("clips without speech", lambda m: _fmt(m.get("n_no_speech", "n/a")))]
    for label, show in rows:
        lines.append(f"| {label} | " + " | ".join(show(r.record.metrics.get("test") or {}) for r in floats) + " |")
    lines.append("")
    lines += _grouped(floats, "Test split per corpus", lambda m: (m.get("test") or {}).get("per_corpus"),
                      "Accuracy on each corpus's held-out speakers.")
    loco = _grouped(floats, "Leave-one-corpus-out", lambda m: m.get("loco"),
                    "Trained on every other corpus, tested on the named one (never seen in training): the honest "
                    "measure of how the model does on recordings unlike its training data. Balanced accuracy is "
                    "the mean of female and male recall (plain accuracy on a single-sex corpus).")
    if loco:
        worst = [loco_accuracy(r.record.metrics) for r in floats]
        loco.insert(-1, "| **worst corpus (balanced)** | " + " | ".join(
            "n/a" if m is None else f"**{100 * m:.1f}%**" for m in worst) + " |")
        held = [r.record.metrics.get("loco_nonspeech") for r in floats]
        if any(held):
            loco.insert(-1, "| non-speech, each source held out in one fold: no gender | " + " | ".join(
                "n/a" if not h else f"{h['rejected']} of {h['clips']} clips" for h in held) + " |")
    lines += loco
    lines += _grouped(floats, "Indonesian test clips per codec", lambda m: (m.get("test") or {}).get(
        "indonesian_per_format"), "The Indonesian corpus confounds codec and label; accuracy should not depend "
                                  "on the format.")
    return lines


def _speech_threshold_lines(floats) -> list[str]:
    """Each model's speech threshold and what it did on the held-out corpora it was chosen on."""
    rows = []
    for r in floats:
        if SPEECH_OUTPUT_NAME not in r.record.outputs:
            continue
        choice = r.record.metrics.get("speech_threshold")
        if isinstance(choice, dict):
            rows.append(f"| {r.name} | {r.record.speech_threshold:.2f} | {choice['speech_lost']} of "
                        f"{choice['speech_clips']} | {choice['nonspeech_rejected']} of {choice['nonspeech_clips']} |")
        else:
            rows.append(f"| {r.name} | {r.record.speech_threshold:.2f} | not measured | not measured |")
    if not rows:
        return []
    return ["A window is speech when `p_speech` reaches the model's speech threshold (`gvd.speech_threshold`): "
            "the highest of 0.50, 0.55, ..., 0.95 at which at most 0.5 % of the held-out speech clips of "
            "leave-one-corpus-out get no gender, so a model whose speech output is less sure of music asks "
            "more of it.", "",
            "| model | speech threshold | held-out speech clips without a gender | held-out non-speech clips "
            "without a gender |", "|---|---:|---:|---:|", *rows, ""]


def _settings_text(settings) -> str:
    """Every other feature setting as written in the model (the card follows whatever fields exist)."""
    shown = {"sample_rate", "window_seconds", "window_hop_seconds", "min_speech_seconds", "schema"}
    return ", ".join(f"{key} {value}" for key, value in settings.to_dict().items() if key not in shown)


def _parity_sources(floats) -> str:
    names = {"parity_windows.npz": "the sample of real test windows written by training",
             "synthetic": "random feature-like windows of several lengths",
             "test_windows.npz": "every window of the whole test split, labelled, written by training"}
    parts: list[str] = []
    for r in floats:
        for part in str((r.parity or {}).get("source", "")).split("+"):
            text = names.get(part, f"`{part}`")
            if part and text not in parts:
                parts.append(text)
    return "; ".join(parts) or "n/a"


def card_text(results, default: str, train_dir: Path | None = None) -> str:
    floats = [r for r in results if not r.quantized]
    first = floats[0].record if floats else results[0].record
    settings = first.feature_settings
    has_loco = all(loco_accuracy(r.record.metrics) is not None for r in floats)
    criterion = ("leave-one-corpus-out (LOCO) balanced accuracy on its worst held-out corpus with both sexes"
                 if has_loco
                 else "test-split clip accuracy (LOCO metrics are not in training.json)")
    lines = [
        "# gvd models: model card",
        "",
        "Small recurrent networks that decide whether a voice is female or male from 3-second windows of "
        "speech, run by the `gvd` runtime with onnxruntime on the device. Each file is self-describing: its "
        "ONNX metadata (`gvd.*` keys) holds the feature settings, labels, decision threshold, speech "
        "threshold, cell, version, creation date, training-data manifest hash, metrics and licence, and the "
        "runtime refuses a model "
        "whose settings it cannot honour. `manifest.json` lists every file with its sha256, which the "
        "runtime checks before loading.",
        "",
        "> **Licence: non-commercial research use.** The models are trained on RAVDESS (CC BY-NC-SA 4.0), TESS "
        "(CC BY-NC-ND 4.0), the URDU-Dataset and several corpora that state no licence (research use), so they "
        "carry those terms: research and non-commercial use only, attribution, share-alike. The gvd code is "
        "Apache-2.0; these weights are not.",
        "",
        "## Models",
        "",
        "| name | file | cell | architecture | int8 | size (bytes) | window ms (median / p95) "
        "| parity max abs diff | default |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        c = r.record.model_config
        arch = (f"{c.get('layers', 1)} x {c.get('units')} {'bi-' if c.get('bidirectional') else ''}"
                f"{r.cell.upper()}, {c.get('pooling', 'last')} pooling"
                f"{', Dense ' + str(c['dense_units']) if c.get('dense_units') else ''}")
        parity = r.parity.get("max_abs_diff") if r.parity else None
        parity_text = "n/a (int8)"
        if r.parity and parity is not None:
            parity_text = f"{parity:.2e} ({r.parity['windows']} windows)"
        lines.append(f"| {r.name} | `{r.path.name}` | {r.cell} | {arch} | {'yes' if r.quantized else 'no'} | "
                     f"{r.size_bytes:,} | {r.timing.median_ms:.3f} / {r.timing.p95_ms:.3f} | {parity_text} | "
                     f"{'**yes**' if r.name == default else ''} |")
    lines += [
        "",
        f"The default (`{default}`) is the float model with the best {criterion}; "
        "ties within 0.1 point go to the fastest. Window times: one full analysis window "
        f"({settings.window_seconds:g} s x {settings.n_features} features per frame), batch 1, onnxruntime "
        "with one intra-op and one inter-op thread, measured on the export machine (2 shared CPU cores, "
        "x86-64) right after export; see "
        "`benchmarks/results/export.md` for the native-vs-tf2onnx comparison.",
        "",
        "Every float model is built from the trained Keras weights as native ONNX `LSTM` / `GRU` / `RNN` "
        "operators (no `Loop`/`Scan`), and its output is checked against Keras on the parity windows "
        f"({_parity_sources(floats)}): largest |Keras - onnxruntime| at most 1e-5 and no clip decision "
        "changes, or the export fails.",
        "",
    ]
    int8_notes = [r for r in floats if "int8" in r.accuracy]
    if int8_notes:
        lines += ["## int8", "",
                  "| model | shipped | size float -> int8 (bytes) | window ms float -> int8 "
                  "| clip accuracy float -> int8 | drop (points) | max abs diff vs float | clip decisions flipped |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in int8_notes:
            e = r.accuracy["int8"]
            if "clip_accuracy_float" in e:
                accuracy = (f"{e['clip_accuracy_float']:.4f} -> {e['clip_accuracy_int8']:.4f} "
                            f"({e['labelled_clips']} clips)")
                drop = f"{e['accuracy_drop_points']:.2f}"
            else:
                accuracy, drop = "no labels", f"<= {e['accuracy_drop_points_bound']:.2f}"
            shipped = "yes" if e["shipped"] else f"**no**: {e.get('not_shipped_because', '')}"
            lines.append(f"| {r.name} | {shipped} | {e['size_bytes_float']:,} -> "
                         f"{e['size_bytes_int8']:,} | {e['window_ms_median_float']:.3f} -> "
                         f"{e['window_ms_median_int8']:.3f} | {accuracy} | {drop} | {e['max_abs_diff_vs_float']:.4f} | "
                         f"{e['clip_decision_flips']} of {e['clips']} |")
        lines += ["", "Dynamic int8 quantization with onnxruntime (`quantize_dynamic`, int8 weights, activations "
                  "quantized at run time). onnxruntime has int8 kernels for LSTM only (no int8 GRU/RNN), so only "
                  "the LSTM is quantized; it ships only if clip accuracy drops by at most 0.5 points and at most 2% of "
                  "clip decisions flip (equal accuracy with decisions swapped both ways would be a different model). "
                  "Clip decisions are compared on the real windows (the whole labelled test split and the "
                  "sample training wrote); each sample window counts as its own clip.", ""]
    lines += [
        "## Training data",
        "",
        "| corpus | kind | what | speakers (F / M) | files | held out as | licence |",
        "|---|---|---|---|---|---|---|",
        *(_corpus_rows(first) or ["| (training.json lists no corpora) | | | | | | |"]),
        "",
        "Counts as `train.data.load_corpora` reads `../shared/data` (byte-identical duplicates dropped; a file "
        "its corpus's `speakers.csv` does not list counts as its own speaker). Splits are by speaker, never by "
        "file or segment. Children are trained on but reported apart from adults; non-speech (installed game "
        "music, calm instrumental music, animal, household and system sounds, synthetic music, alarms and noise, "
        "and the real recordings of `../shared/nonspeech`) trains the `p_speech` output only. "
        "The honest measure is accuracy on corpora never seen in training: " + (
            "the leave-one-corpus-out table below (small corpora are held out by kind: `read_small` = sanskrit, "
            "bangla, polish, thai_class, arctic; `digits` = hindi_digits, spanish_digits)." if has_loco else
            "**this training run did not record leave-one-corpus-out (LOCO) metrics**, so the test-split numbers "
            "below (held-out speakers of corpora seen in training) are likely optimistic for new recording "
            "conditions."),
        f"Training data manifest sha256: `{first.data_manifest_sha256 or 'n/a'}`. Training preset: "
        f"`{first.preset or 'n/a'}`. Model version: `{first.model_version}`, created {first.created}.",
        "",
        "## Metrics (from training.json)",
        "",
        f"Decision threshold: {', '.join(f'{r.name} {r.record.threshold:.3f}' for r in floats)}.",
        "",
        *_speech_threshold_lines(floats),
        *_metrics_sections(results),
        "",
        "## Features",
        "",
        f"{settings.sample_rate} Hz mono; {settings.window_seconds:g} s windows every "
        f"{settings.window_hop_seconds:g} s, at least {settings.min_speech_seconds:g} s of speech each; "
        f"{settings.n_features} features per frame; {_settings_text(settings)}. "
        "The same settings are in each model's `gvd.feature_settings` metadata.",
        "",
        "## Known limits",
        "",
        "- Two labels only (male / female, the corpora's labels); the output is a property of the voice, not "
        "of a person's gender identity. Children's voices (boys and girls overlap before puberty) are in the "
        "data but reported apart: see the `speechocean762_children` row of the test split; elderly speakers, "
        "whispering and singing are not.",
        "- About 450 adult speakers in a dozen languages, but most corpora are small and many are one kind of "
        "speech (read sentences, digits, acted emotion); men outnumber women. Accuracy on other microphones, "
        "rooms and speaking styles can be lower than on these corpora"
        + ("; the leave-one-corpus-out table shows how much it drops on an unseen corpus." if has_loco else "."),
        "- In the Indonesian recordings the codec is confounded with the label (all male files are mono AAC, "
        "many female ones band-limited WhatsApp Opus), in the Urdu `Angry` folder every speaker is male, "
        "`quran` is chanted and male only, `tess` two women only; a model can partly learn codec, delivery or "
        "corpus instead of voice.",
        "- The `p_speech` output was trained on installed game music, sound effects and synthetic sounds; "
        "singing, speech-like animal calls and radio chatter are not in its data. A window it rejects gets no "
        "gender; a clip in which it accepted fewer than half of the windows it judged (none, or a few false "
        "alarms in a piece of music) is `no_speech` with reason `not_speech`, and a stream applies the same "
        "rule to its last 5 s. So speech that fills less than about half of a recording of other loud sound "
        "(music playing before and after an announcement) is missed: cut the recording or stream it.",
        "- Windows with less than the minimum speech are not judged; clips shorter than that return "
        "`no_speech` with reason `too_short`; clips whose windows disagree (two voices) are flagged `mixed`.",
        "",
        "## Rebuild",
        "",
        "```",
        "python -m train.release --data ../shared/data --out models   # trains, then runs gvd export:",
        "gvd export --train-dir DIR --out models",
        "#   DIR = the training output (<cell>/model.keras, training.json, test_windows.npz, parity_windows.npz);",
        "#   test_windows.npz, the whole labelled test split, feeds the parity and int8 checks",
        "python benchmarks/bench_export.py --train-dir DIR   # native vs tf2onnx timings",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_card(path: Path, results, default: str, train_dir: Path | None = None) -> Path:
    path.write_text(card_text(results, default, train_dir))
    return path
