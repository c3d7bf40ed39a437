"""Clip-level evaluation, exactly as the runtime decides: window probabilities, speech-weighted mean.

Every number here is per recording (clip), never per window: windows of one recording are not
independent and a window-level score would flatter long files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.decision import SPEECH_THRESHOLD, accepted_as_speech, enough_speech
from edge.features import PITCH_REFERENCE_HZ
from edge.pipeline import aggregate
from edge.settings import FeatureSettings

from .data import Recording
from .dataset import Windows

# Where the sexes' pitch ranges overlap in the shared corpora (clip median F0): 5 % of the women's
# clips lie under 185 Hz, 17 % of the men's above 180 Hz (raised and acted voices, chant). A model
# that judges by pitch fails there first, so its accuracy there is reported on its own.
OVERLAP_FEMALE_BELOW_HZ = 185.0
OVERLAP_MALE_ABOVE_HZ = 180.0


def predict_windows(model, windows: Windows, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(p_female, p_speech) for every window (p_speech NaN for a model without that output); windows
    of one length are batched together (no padding, no mask)."""
    p_female = np.zeros(len(windows), dtype=np.float64)
    p_speech = np.full(len(windows), np.nan)
    if not len(windows):
        return p_female, p_speech
    lengths = windows.lengths
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        for start in range(0, idx.size, batch_size):
            chunk = idx[start : start + batch_size]
            x = np.stack([windows.features[i] for i in chunk]).astype(np.float32)
            out = model.predict_on_batch(x)
            outputs = out if isinstance(out, (list, tuple)) else [out]
            p_female[chunk] = np.asarray(outputs[0]).reshape(-1)
            if len(outputs) > 1:
                p_speech[chunk] = np.asarray(outputs[1]).reshape(-1)
    return p_female, p_speech


@dataclass
class ClipScores:
    recordings: list[Recording]
    p_female: np.ndarray  # NaN where the clip got no gender (no window held speech the model accepted)
    y: np.ndarray  # 1 female, 0 male, -1 non-speech
    heard: np.ndarray | None = None  # some window held enough speech for the model (else: silence)
    # Per clip, each window the model judged, in time order: its p_speech (NaN: no such output), its
    # p_female and its seconds of speech (the vote's weight). Empty: no window held enough speech.
    window_p_speech: list[np.ndarray] | None = None
    window_p_female: list[np.ndarray] | None = None
    window_speech: list[np.ndarray] | None = None
    median_f0: np.ndarray | None = None  # per clip, Hz, over its windows' voiced speech frames (NaN: none)

    @property
    def has_speech(self) -> np.ndarray:
        return ~np.isnan(self.p_female)

    def subset(self, mask: np.ndarray) -> ClipScores:
        idx = np.flatnonzero(mask)
        heard = None if self.heard is None else self.heard[idx]

        def pick(per_clip: list[np.ndarray] | None) -> list[np.ndarray] | None:
            return None if per_clip is None else [per_clip[i] for i in idx]

        return ClipScores([self.recordings[i] for i in idx], self.p_female[idx], self.y[idx], heard,
                          pick(self.window_p_speech), pick(self.window_p_female), pick(self.window_speech),
                          None if self.median_f0 is None else self.median_f0[idx])


def clean_windows_by_recording(windows: Windows) -> dict[int, list[int]]:
    """Indices of each recording's clean (variant 0) windows, in order: what the runtime would see."""
    by_rec: dict[int, list[int]] = defaultdict(list)
    for i, (rec, variant) in enumerate(zip(windows.recording, windows.variant, strict=True)):
        if variant == 0:
            by_rec[rec].append(i)
    return by_rec


def clip_scores(recordings: Sequence[Recording], windows: Windows, p_female: np.ndarray, p_speech: np.ndarray,
                indices: Sequence[int]) -> ClipScores:
    """Aggregate clean (variant 0) windows per recording as the runtime does: windows the speech
    output rejects get no vote, the rest are averaged weighted by their speech, and a clip with too
    few accepted windows (:func:`edge.decision.enough_speech`) gets no gender."""
    by_rec = clean_windows_by_recording(windows)
    speech = np.asarray(windows.speech)
    accepted = accepted_as_speech(p_speech)
    p = np.full(len(indices), np.nan)
    heard = np.zeros(len(indices), dtype=bool)
    window_p_speech, window_p_female, window_speech = [], [], []
    for k, index in enumerate(indices):
        judged = by_rec.get(index, [])
        members = [i for i in judged if accepted[i]]
        heard[k] = bool(judged)
        if not enough_speech(len(members), len(judged)):
            members = []
        window_p_speech.append(p_speech[judged])
        window_p_female.append(p_female[judged])
        window_speech.append(speech[judged])
        if members:
            p[k] = aggregate(p_female[members], speech[members])
    recs = [recordings[i] for i in indices]
    return ClipScores(recs, p, np.array([r.y for r in recs], dtype=np.int64), heard, window_p_speech,
                      window_p_female, window_speech)


def voiced_frames(features: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """Per frame of a window's (frames, features) input: voiced. The pitch columns follow the cepstra:
    log2(F0 / PITCH_REFERENCE_HZ), then the voicing strength (:func:`edge.features.pitch_columns`)."""
    return features[:, settings.n_mfcc + 1] > settings.vad_voicing


def voiced_log_f0(features: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    """The log2(F0 / PITCH_REFERENCE_HZ) column of a window's voiced frames."""
    return features[voiced_frames(features, settings), settings.n_mfcc]


def clip_median_f0(windows: Windows, indices: Sequence[int], settings: FeatureSettings) -> np.ndarray:
    """Median F0 (Hz) of each recording's voiced speech frames, read from the pitch columns of its
    clean windows (frames shared by overlapping windows count once per window); NaN without pitch
    columns or voiced frames."""
    out = np.full(len(indices), np.nan)
    if not settings.pitch:
        return out
    by_rec = clean_windows_by_recording(windows)
    for k, index in enumerate(indices):
        frames = [windows.features[i] for i in by_rec.get(index, [])]
        voiced = np.concatenate([voiced_log_f0(f, settings) for f in frames] or [np.zeros(0)])
        if voiced.size:
            out[k] = PITCH_REFERENCE_HZ * 2.0 ** float(np.median(voiced))
    return out


def pitch_overlap(scores: ClipScores, threshold: float = 0.5) -> dict[str, list[int]]:
    """[right, clips] for the women under OVERLAP_FEMALE_BELOW_HZ and the men over
    OVERLAP_MALE_ABOVE_HZ among the clips that got a gender."""
    if scores.median_f0 is None:
        return {}
    answered = scores.has_speech & (scores.y >= 0)
    right = (scores.p_female >= threshold) == (scores.y == 1)
    low_women = answered & (scores.y == 1) & (scores.median_f0 < OVERLAP_FEMALE_BELOW_HZ)
    high_men = answered & (scores.y == 0) & (scores.median_f0 > OVERLAP_MALE_ABOVE_HZ)
    return {"female_low": [int(right[low_women].sum()), int(low_women.sum())],
            "male_high": [int(right[high_men].sum()), int(high_men.sum())]}


def equal_error(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(equal error rate, threshold where false-female and false-male rates meet)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(y, p)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(np.clip(thresholds[i], 0.0, 1.0))


def clip_metrics(scores: ClipScores, threshold: float = 0.5) -> dict:
    """Balanced accuracy (mean of female and male recall: the headline), accuracy, per-sex recall,
    precision/F1 (female = positive), ROC AUC, EER, reliability of confident answers, and the clips
    lost to ``no_speech``. Non-speech clips: the share that correctly got no gender."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

    nonspeech = scores.y < 0
    out: dict = {"n_clips": len(scores.recordings), "n_no_speech": int((~scores.has_speech & ~nonspeech).sum())}
    if nonspeech.any():
        out["n_nonspeech"] = int(nonspeech.sum())
        out["nonspeech_rejected"] = float(np.mean(~scores.has_speech[nonspeech]))
    speech = scores.subset(scores.has_speech & ~nonspeech)
    if (~nonspeech).any():
        out["no_speech_rate"] = out["n_no_speech"] / int((~nonspeech).sum())
    if not len(speech.recordings):
        return out
    pred = (speech.p_female >= threshold).astype(int)
    y = speech.y
    out.update({
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(np.mean([np.mean(pred[y == c] == c) for c in (0, 1) if np.any(y == c)])),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        "n_female": int(y.sum()),
        "n_male": int((1 - y).sum()),
        "recall_female": float(np.mean(pred[y == 1] == 1)) if np.any(y == 1) else None,
        "recall_male": float(np.mean(pred[y == 0] == 0)) if np.any(y == 0) else None,
    })
    confidence = np.where(pred == 1, speech.p_female, 1.0 - speech.p_female)
    confident = confidence >= 0.9
    out["confident_share"] = float(np.mean(confident))
    out["confident_accuracy"] = float(np.mean(pred[confident] == y[confident])) if confident.any() else None
    if len(np.unique(y)) == 2:
        eer, eer_threshold = equal_error(y, speech.p_female)
        out.update({"roc_auc": float(roc_auc_score(y, speech.p_female)), "eer": eer, "eer_threshold": eer_threshold})
    return out


def grouped_metrics(scores: ClipScores, key, threshold: float = 0.5) -> dict[str, dict]:
    """Metrics per group (e.g. per corpus, per file format)."""
    groups = sorted({key(r) for r in scores.recordings})
    out = {}
    for group in groups:
        mask = np.array([key(r) == group for r in scores.recordings])
        out[group] = clip_metrics(scores.subset(mask), threshold)
    return out


def format_of(rec: Recording) -> str:
    """Codec family of a file, for the per-format check (m4a and mp4 both hold AAC)."""
    return {"m4a": "aac", "mp4": "aac", "aac": "aac"}.get(rec.format, rec.format)


def score_clips(model, recordings: Sequence[Recording], windows: Windows, indices: Sequence[int]) -> ClipScores:
    """``model``'s clip decisions on the recordings ``indices`` (their clean windows)."""
    wanted = set(indices)
    mask = np.array([r in wanted and v == 0 for r, v in zip(windows.recording, windows.variant, strict=True)],
                    dtype=bool)
    subset = windows.select(mask) if len(windows) else windows
    p_female, p_speech = predict_windows(model, subset)
    return clip_scores(recordings, subset, p_female, p_speech, list(indices))


def evaluate(model, recordings: Sequence[Recording], windows: Windows, indices: Sequence[int],
             threshold: float = 0.5, settings: FeatureSettings | None = None) -> tuple[dict, ClipScores]:
    """All clip metrics of ``model`` on the recordings ``indices``, overall, per corpus, per format;
    with the windows' ``settings``, also each clip's median F0 and the accuracy in the pitch overlap."""
    scores = score_clips(model, recordings, windows, indices)
    metrics = clip_metrics(scores, threshold)
    if settings is not None and settings.pitch:
        scores.median_f0 = clip_median_f0(windows, indices, settings)
        metrics["pitch_overlap"] = pitch_overlap(scores, threshold)
    metrics["per_corpus"] = grouped_metrics(scores, lambda r: r.corpus, threshold)
    indo = scores.subset(np.array([r.corpus == "indonesian" for r in scores.recordings], dtype=bool))
    if len(indo.recordings):
        metrics["indonesian_per_format"] = grouped_metrics(indo, format_of, threshold)
    return metrics, scores


# Held-out speech clips a model's speech threshold may cost, at most (a share of them).
SPEECH_LOSS_BUDGET = 0.005
# Thresholds tried, from the shared default up.
SPEECH_THRESHOLD_GRID = tuple(round(SPEECH_THRESHOLD + 0.05 * k, 2) for k in range(10))


@dataclass(frozen=True)
class SpeechThresholdChoice:
    """A model's speech threshold and what it does on the held-out corpora it was chosen on."""

    threshold: float
    speech_clips: int
    speech_lost: int  # held-out speech clips that get no gender at this threshold
    nonspeech_clips: int
    nonspeech_rejected: int  # held-out non-speech clips that get no gender at this threshold

    def to_dict(self) -> dict[str, float | int]:
        return {"threshold": self.threshold, "speech_clips": self.speech_clips, "speech_lost": self.speech_lost,
                "nonspeech_clips": self.nonspeech_clips, "nonspeech_rejected": self.nonspeech_rejected,
                "budget": SPEECH_LOSS_BUDGET}


def _speech_clips(window_p_speech: Sequence[np.ndarray], threshold: float) -> int:
    """Clips that count as speech at ``threshold``: enough of their judged windows reach it."""
    return sum(enough_speech(int(accepted_as_speech(p, threshold).sum()), len(p)) for p in window_p_speech)


def choose_speech_threshold(speech: Sequence[np.ndarray], nonspeech: Sequence[np.ndarray]) -> SpeechThresholdChoice:
    """The highest threshold of the grid at which the held-out speech clips lost to ``no_speech`` stay
    within the budget (each clip given as its judged windows' p_speech, in any order).

    Models differ in how sure their speech output is: one threshold for all let the weakest pass twice
    as many unseen sounds as the best (measured on unseen system sounds). Clips without a judged
    window are lost at every threshold and count against the budget, so the choice is never below
    the shared default.
    """
    budget = SPEECH_LOSS_BUDGET * len(speech)
    best = SPEECH_THRESHOLD_GRID[0]
    for threshold in SPEECH_THRESHOLD_GRID:
        if len(speech) - _speech_clips(speech, threshold) > budget:
            break
        best = threshold
    return SpeechThresholdChoice(best, len(speech), len(speech) - _speech_clips(speech, best), len(nonspeech),
                                 len(nonspeech) - _speech_clips(nonspeech, best))
