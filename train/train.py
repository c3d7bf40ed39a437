"""Training: batches of equal-length windows, early stopping on held-out speakers, the full run.

Batches: windows come in many lengths (short clips, partly silent windows). A batch is cropped to
one length (the batch minimum, or a random target between ``crop_min_frames`` and
``crop_max_frames`` when the recipe asks for crops) so no padding or masking is ever needed and the
exported model keeps a dynamic time axis. Crops are re-normalised with the runtime's own
:func:`edge.features.normalize_features`, so a crop looks like the runtime's input for a clip of
that length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.decision import SPEECH_THRESHOLD
from edge.features import PITCH_REFERENCE_HZ
from edge.metadata import OUTPUT_NAME, SPEECH_OUTPUT_NAME
from edge.pipeline import normalize_window
from edge.settings import FeatureSettings

from .config import TrainConfig
from .data import LOCO_GROUPS, NONSPEECH, Recording
from .dataset import Windows
from .evaluate import (
    OVERLAP_FEMALE_BELOW_HZ,
    OVERLAP_MALE_ABOVE_HZ,
    SPEECH_LOSS_BUDGET,
    ClipScores,
    SpeechThresholdChoice,
    choose_speech_threshold,
    voiced_frames,
    voiced_log_f0,
)
from .test_windows import write_test_windows

LENGTH_STEP = 4  # crop lengths are multiples of this many frames (fewer distinct shapes to trace)
# Speaker-weighted sampling counts at most this many speakers per corpus: past it a corpus (or the
# children's) would crowd out the others, with no more rooms or microphones to show for it.
SPEAKER_WEIGHT_CAP = 30


def configure_tensorflow(threads: int, seed: int) -> None:
    """Quiet, deterministic-ish TensorFlow on a small shared CPU. Call before building a model."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised in this process: the first setting stays
    keras.utils.set_random_seed(seed)


def _codes(names: Sequence[str]) -> np.ndarray:
    """0..k-1 for the k distinct names, in sorted order."""
    if not names:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.array(names, dtype=object), return_inverse=True)[1].astype(np.int64)


@dataclass
class TrainSet:
    """Windows with their label and (corpus, label) stratum."""

    windows: Windows
    y: np.ndarray  # 1 female, 0 male, -1 non-speech
    strata: np.ndarray
    corpus: np.ndarray  # corpus index of each window (for the adversarial head)
    speech_strata: np.ndarray  # per stratum code: True when the stratum is speech
    stratum_speakers: np.ndarray  # per stratum code: speakers in its corpus
    single_sex: np.ndarray  # per window: its corpus has speakers of one sex only

    @classmethod
    def build(cls, windows: Windows, recordings: Sequence[Recording], indices: Sequence[int],
              variants: bool = True) -> TrainSet:
        wanted = set(indices)
        mask = np.array([r in wanted and (variants or v == 0)
                         for r, v in zip(windows.recording, windows.variant, strict=True)], dtype=bool)
        subset = windows.select(mask) if len(windows) else windows
        recs = [recordings[r] for r in subset.recording]
        y = np.array([rec.y for rec in recs], dtype=np.float32)
        strata_of = [(rec.corpus, rec.label) for rec in recs]
        stratum_list = sorted(set(strata_of))
        code = {stratum: i for i, stratum in enumerate(stratum_list)}
        strata = np.array([code[stratum] for stratum in strata_of], dtype=np.int64)
        speech_strata = np.array([label != NONSPEECH for _, label in stratum_list], dtype=bool)
        speakers, sexes = _corpus_speakers_and_sexes(recordings)  # properties of each corpus as a whole
        stratum_speakers = np.array([speakers.get(corpus, 1) for corpus, _ in stratum_list], dtype=np.float64)
        single_sex = np.array([rec.is_speech and sexes.get(rec.corpus, 0) < 2 for rec in recs], dtype=bool)
        return cls(subset, y, strata, _codes([rec.corpus for rec in recs]), speech_strata, stratum_speakers,
                   single_sex)

    @property
    def y_speech(self) -> np.ndarray:
        return (self.y >= 0).astype(np.float32)

    def y_gender(self, single_sex_gender: bool) -> np.ndarray:
        """Gender targets; -1 (no gender loss) for non-speech, and for one-sex corpora unless they teach sex."""
        return self.y if single_sex_gender else np.where(self.single_sex, -1.0, self.y).astype(np.float32)

    def __len__(self) -> int:
        return len(self.windows)


def _corpus_speakers_and_sexes(recordings: Sequence[Recording]) -> tuple[dict[str, int], dict[str, int]]:
    """Speakers and distinct sexes of each speech corpus among ``recordings``."""
    speakers: dict[str, set[str]] = {}
    sexes: dict[str, set[str]] = {}
    for rec in recordings:
        if rec.is_speech:
            speakers.setdefault(rec.corpus, set()).add(rec.group)
            sexes.setdefault(rec.corpus, set()).add(rec.label)
    return {c: len(s) for c, s in speakers.items()}, {c: len(s) for c, s in sexes.items()}


class BatchMaker:
    """Yields (x, y, index) batches of one length, following the recipe's sampling and cropping;
    ``index`` is each row's position in the training set (for per-window targets such as the corpus)."""

    def __init__(self, data: TrainSet, config: TrainConfig, rng: np.random.Generator):
        if not len(data):
            raise ValueError("no training windows: every training recording was silent or failed to decode")
        self.data, self.config, self.rng = data, config, rng
        if config.overlap_weight != 1.0 and not config.balance:
            raise ValueError("overlap_weight changes the balanced draws: it needs balance = true")
        self.lengths = data.windows.lengths
        self.y_gender = data.y_gender(config.single_sex_gender)
        self.p = self._draw_probabilities(data, config) if config.balance else None

    @staticmethod
    def _draw_probabilities(data: TrainSet, config: TrainConfig) -> np.ndarray:
        """Every stratum equally often (or by its corpus's speakers); non-speech strata share
        ``nonspeech_fraction`` of the draws equally."""
        counts = np.bincount(data.strata, minlength=data.speech_strata.size).astype(np.float64)
        is_speech = data.speech_strata
        prior = (np.sqrt(np.minimum(data.stratum_speakers, SPEAKER_WEIGHT_CAP)) if config.speaker_weighted
                 else np.ones(is_speech.size))
        prior = np.where(is_speech, prior, 1.0)
        kind_total = np.array([prior[is_speech].sum(), prior[~is_speech].sum()])
        share = np.where(is_speech, 1.0 - config.nonspeech_fraction, config.nonspeech_fraction)
        stratum_weight = share * prior / np.maximum(np.where(is_speech, kind_total[0], kind_total[1]), 1e-12)
        weights = (stratum_weight / np.maximum(counts, 1))[data.strata]
        if config.overlap_weight != 1.0:
            weights = _favour_overlap(weights, data, config)
        return weights / weights.sum()

    def steps(self) -> int:
        if self.config.steps_per_epoch:
            return self.config.steps_per_epoch
        return int(np.ceil(len(self.data) / self.config.batch_size))

    def epoch(self):
        """One epoch of batches."""
        size = self.config.batch_size
        if self.config.balance or self.config.steps_per_epoch:
            for _ in range(self.steps()):
                yield self._batch(self.rng.choice(len(self.data), size=size, replace=True, p=self.p))
            return
        # Plain pass over shuffled windows; neighbours in length share a batch (little cropping).
        order = self.rng.permutation(len(self.data))
        pool = size * 16
        batches = []
        for start in range(0, order.size, pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + size] for i in range(0, chunk.size, size)]
        for b in self.rng.permutation(len(batches)):
            yield self._batch(batches[b])

    def _batch(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        shortest = int(self.lengths[idx].min())
        length = shortest
        crop = self.config.crop_max_frames > 0
        if crop:
            target = int(self.rng.integers(self.config.crop_min_frames, self.config.crop_max_frames + 1))
            length = max(1, min(shortest, target))
            if length > LENGTH_STEP:
                length -= length % LENGTH_STEP
        x = np.empty((idx.size, length, self.data.windows.features[idx[0]].shape[1]), dtype=np.float32)
        for row, i in enumerate(idx):
            feats = self.data.windows.features[i]
            offset = int(self.rng.integers(0, feats.shape[0] - length + 1))
            window = feats[offset : offset + length]
            if crop and length < feats.shape[0]:
                window = normalize_window(window, self.config.features)
            x[row] = window
        self._shift_pitch(x)
        self._mask(x)
        return x, self.y_gender[idx], idx

    def _shift_pitch(self, x: np.ndarray) -> None:
        """Move each chosen crop's log-F0 column (voiced frames) by one random offset, in place."""
        config = self.config
        if not config.p_pitch_shift or not config.features.pitch:
            return
        log_f0 = config.features.n_mfcc
        for row in np.flatnonzero(self.rng.random(x.shape[0]) < config.p_pitch_shift):
            voiced = voiced_frames(x[row], config.features)
            x[row, voiced, log_f0] += self.rng.uniform(-config.pitch_shift_octaves, config.pitch_shift_octaves)

    def _mask(self, x: np.ndarray) -> None:
        """SpecAugment: zero random time spans and coefficient bands of each crop, in place."""
        config, (batch, length, width) = self.config, x.shape
        for row in range(batch):
            for _ in range(config.time_masks):
                span = int(self.rng.integers(0, min(config.mask_frames, length // 4) + 1))
                start = int(self.rng.integers(0, length - span + 1))
                x[row, start : start + span] = 0.0
            for _ in range(config.coefficient_masks):
                span = int(self.rng.integers(0, config.mask_coefficients + 1))
                start = int(self.rng.integers(0, width - span + 1))
                x[row, :, start : start + span] = 0.0


def in_pitch_overlap(data: TrainSet, settings: FeatureSettings) -> np.ndarray:
    """Per window: a man's median voiced pitch above OVERLAP_MALE_ABOVE_HZ or a woman's below
    OVERLAP_FEMALE_BELOW_HZ (False for non-speech and windows without voiced frames)."""
    male = np.log2(OVERLAP_MALE_ABOVE_HZ / PITCH_REFERENCE_HZ)
    female = np.log2(OVERLAP_FEMALE_BELOW_HZ / PITCH_REFERENCE_HZ)
    out = np.zeros(len(data), dtype=bool)
    for i, (features, y) in enumerate(zip(data.windows.features, data.y, strict=True)):
        voiced = voiced_log_f0(features, settings)
        if y >= 0 and voiced.size:
            median = float(np.median(voiced))
            out[i] = median > male if y == 0 else median < female
    return out


def _favour_overlap(weights: np.ndarray, data: TrainSet, config: TrainConfig) -> np.ndarray:
    """``weights`` with pitch-overlap windows ``overlap_weight`` times as likely as the others of their
    stratum; each stratum keeps its share of the draws."""
    if config.overlap_weight <= 0 or not config.features.pitch:
        raise ValueError("overlap_weight must be positive and needs the pitch columns (features.pitch)")
    boosted = weights * np.where(in_pitch_overlap(data, config.features), config.overlap_weight, 1.0)
    n = data.speech_strata.size
    before = np.bincount(data.strata, weights=weights, minlength=n)
    after = np.bincount(data.strata, weights=boosted, minlength=n)
    return boosted * (before / np.maximum(after, 1e-300))[data.strata]


def _bce(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def validation_loss(model, data: TrainSet, balance: bool, single_sex_gender: bool = True) -> tuple[float, float]:
    """(loss, gender window accuracy) on clean validation windows; per-stratum means when balancing.

    The loss adds the speech output's loss (every window) to the gender loss (windows with a gender
    target, as in training).
    """
    from .evaluate import predict_windows

    if not len(data):
        return float("nan"), float("nan")
    p_female, p_speech = predict_windows(model, data.windows)
    y = data.y_gender(single_sex_gender)
    speech = y >= 0
    losses = np.where(speech, _bce(np.maximum(y, 0), p_female), 0.0)
    if not np.all(np.isnan(p_speech)):
        losses = losses + _bce(data.y_speech, p_speech)
    correct = ((p_female >= 0.5) == (y >= 0.5)).astype(float)
    strata = np.unique(data.strata) if balance else np.array([-1])
    select = (lambda s: data.strata == s) if balance else (lambda s: np.ones(len(data), dtype=bool))
    loss = float(np.mean([losses[select(s)].mean() for s in strata]))
    accuracy = float(np.mean([correct[select(s) & speech].mean() for s in strata if (select(s) & speech).any()]))
    return loss, accuracy


def input_statistics(data: TrainSet, sample: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation over (a sample of) the training windows' frames."""
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(data), size=min(sample, len(data)), replace=False) if len(data) else []
    frames = np.concatenate([data.windows.features[i] for i in picked]) if len(picked) else np.zeros((1, 1))
    return frames.mean(axis=0).astype(np.float32), np.maximum(frames.std(axis=0), 1e-3).astype(np.float32)


def masked_bce(label_smoothing: float):
    """Binary cross-entropy on rows whose target is 0 or 1; rows marked -1 (non-speech) count zero."""
    import keras
    from keras import ops

    def loss(y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "float32"), ops.shape(y_pred))
        mask = ops.cast(y_true >= 0, "float32")
        target = ops.maximum(y_true, 0.0) * (1.0 - label_smoothing) + 0.5 * label_smoothing
        per_row = keras.losses.binary_crossentropy(target, y_pred)
        return ops.sum(per_row * ops.reshape(mask, ops.shape(per_row))) / ops.maximum(ops.sum(mask), 1.0)

    return loss


def _adversarial_model(model, n_corpora: int):
    """(training model with a corpus head behind a gradient reversal, the reversal weight variable).

    The corpus head reads the pooled representation; its reversed gradient pushes the recurrent layer
    away from features that tell the training corpora apart. Only ``model`` is kept and exported.
    """
    import keras
    import tensorflow as tf

    weight = tf.Variable(0.0, trainable=False, dtype=tf.float32)

    class GradientReversal(keras.layers.Layer):
        def call(self, x):
            @tf.custom_gradient
            def reverse(x):
                return tf.identity(x), lambda dy: -weight * dy

            return reverse(x)

    pooled = model.get_layer("pool").output
    reversed_pool = GradientReversal(name="reverse")(pooled)
    hidden = keras.layers.Dense(32, activation="relu", name="corpus_hidden")(reversed_pool)
    corpus = keras.layers.Dense(n_corpora, activation="softmax", name="corpus")(hidden)
    return keras.Model(model.inputs, [model.output, corpus], name=f"{model.name}_adversarial"), weight


@dataclass
class FitResult:
    model: object
    history: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    seconds: float = 0.0
    weight_bytes: int = 0


def fit(config: TrainConfig, cell: str, train: TrainSet, val: TrainSet, progress: bool = True,
        label: str = "") -> FitResult:
    """Train one cell; early stopping on validation loss with the best weights restored."""
    import keras
    from tqdm.auto import tqdm

    from .models import build_model, weight_bytes

    configure_tensorflow(config.threads, config.seed)
    model_config = config.model_config(cell)
    mean, std = input_statistics(train)
    model = build_model(model_config, mean, std)
    n_corpora = int(train.corpus.max()) + 1 if len(train) else 1
    if config.adversarial > 0 and model_config.speech_head:
        raise ValueError("the corpus-adversarial head and the speech output cannot be trained together")
    adversary = _adversarial_model(model, n_corpora) if config.adversarial > 0 and n_corpora > 1 else None
    trained = adversary[0] if adversary else model
    trained.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=[masked_bce(config.label_smoothing)]
        + ([keras.losses.BinaryCrossentropy()] if model_config.speech_head else [])
        + ([keras.losses.SparseCategoricalCrossentropy()] if adversary else []),
    )
    rng = np.random.default_rng(config.seed)
    batches = BatchMaker(train, config, rng)
    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best, best_epoch, best_weights, waited = np.inf, 0, model.get_weights(), 0
    started = time.perf_counter()
    bar = tqdm(range(config.epochs), desc=f"{label or cell}", unit="epoch", disable=not progress)
    for epoch in bar:
        losses, accs = [], []
        if adversary:  # DANN schedule: the reversal grows from 0 to its full weight
            progress_done = epoch / max(1, config.epochs - 1)
            adversary[1].assign(config.adversarial * (2.0 / (1.0 + np.exp(-10.0 * progress_done)) - 1.0))
        for x, y, index in batches.epoch():
            targets = [y] + ([train.y_speech[index]] if model_config.speech_head else [])
            targets += [train.corpus[index]] if adversary else []
            logs = trained.train_on_batch(x, targets if len(targets) > 1 else y, return_dict=True)
            losses.append(float(logs["loss"]))
            accs.append(np.nan)
        val_loss, val_acc = validation_loss(model, val, config.balance, config.single_sex_gender)
        for key, value in zip(history, (np.mean(losses), np.mean(accs), val_loss, val_acc), strict=True):
            history[key].append(float(value))
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val_loss=f"{val_loss:.3f}", val_acc=f"{val_acc:.3f}")
        score = val_loss if np.isfinite(val_loss) else np.mean(losses)
        if score < best - 1e-4:
            best, best_epoch, best_weights, waited = score, epoch, model.get_weights(), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    bar.close()
    model.set_weights(best_weights)
    return FitResult(model, history, best_epoch, time.perf_counter() - started, weight_bytes(model))


# --------------------------------------------------------------------------------------------
# A full run: data -> features -> (LOCO) -> final models -> reports -> MLflow


@dataclass
class RunOptions:
    data: list[str]
    out: str | None = None
    cells: tuple[str, ...] = ("lstm", "gru", "rnn")
    loco: bool = False
    baseline: bool = False  # also run the original recipe's LOCO, for the side-by-side table
    final: bool = True  # train the deliverable models on the speaker split of all data
    mlflow: bool = True
    cache_dir: str | None = None
    reports_dir: str = "reports"
    parity_windows: int = 200
    progress: bool = True
    # Non-speech for the speech output: folders of audio (``--nonspeech``), plus the installed
    # packages' sounds and synthetic clips, written once under this cache folder.
    nonspeech: tuple[str, ...] = ()
    nonspeech_cache: str | None = None


@dataclass
class Prepared:
    recordings: list[Recording]
    windows: Windows
    manifest_sha256: str
    same_audio: list[tuple[str, str]]
    dropped: list[tuple[str, str]]
    failed: list[str]
    extract_seconds: float


def prepare(config: TrainConfig, options: RunOptions) -> Prepared:
    """Load, de-duplicate, extract (cached) and merge speakers of same-audio recordings."""
    from .data import load_corpora, manifest_sha256, merge_groups
    from .dataset import extract, find_same_audio

    started = time.perf_counter()
    recordings, dropped = load_corpora(options.data)
    augment_config = config.augment
    if config.nonspeech_fraction > 0:
        extra = nonspeech_recordings(options)
        recordings += extra
        music = tuple(sorted(str(r.path) for r in extra if _is_music(r.corpus, r.path)))
        augment_config = replace(augment_config, music_files=music)
    result = extract(recordings, config.features, augment_config, augment_config.variants, seed=config.seed,
                     cache_dir=options.cache_dir, workers=config.workers, progress=options.progress)
    same_audio = find_same_audio(recordings, result.envelopes)
    recordings = merge_groups(recordings, same_audio)
    return Prepared(recordings, result.windows, manifest_sha256(recordings), same_audio,
                    [(a.key, b.key) for a, b in dropped], result.failed, time.perf_counter() - started)


def nonspeech_recordings(options: RunOptions) -> list[Recording]:
    from pathlib import Path

    from . import nonspeech
    from .dataset import default_cache_dir

    cache = Path(options.nonspeech_cache) if options.nonspeech_cache else default_cache_dir().parent / "nonspeech"
    recordings = nonspeech.prepare(cache)
    for folder in options.nonspeech:
        recordings += nonspeech.load_folder(folder)
    return recordings


def _is_music(corpus: str, path) -> bool:
    """Beds for the speech-over-music augmentation: the fixed music sources and synthetic music."""
    from .nonspeech import MUSIC_BEDS

    if corpus == "nonspeech_synthetic":
        return path.parent.name in ("melody", "chords", "band", "drums")
    return corpus in {f"nonspeech_{name}" for name in MUSIC_BEDS}


def _indices(recordings: Sequence[Recording], subset: Sequence[Recording]) -> list[int]:
    where = {rec.key: i for i, rec in enumerate(recordings)}
    return [where[rec.key] for rec in subset]


@dataclass
class FoldResult:
    """One leave-one-corpus-out fold of one cell."""

    metrics: dict  # evaluate()'s figures for the held-out corpus (+ "heldout_nonspeech", timings)
    scores: ClipScores  # the held-out corpus's clips
    fit: FitResult
    nonspeech: ClipScores | None = None  # the non-speech sources held out in this fold


def run_loco(config: TrainConfig, prepared: Prepared, cells: Sequence[str], progress: bool = True,
             heldout_nonspeech: Sequence[str] = ()) -> dict[str, dict[str, FoldResult]]:
    """Leave-one-corpus-out for every cell: ``{cell: {held_out: FoldResult}}``. The sources of the
    ``heldout_nonspeech`` corpora are held out too, spread over the folds (``metrics["heldout_nonspeech"]``)."""
    from .data import loco_folds
    from .evaluate import evaluate, score_clips

    recs, windows = prepared.recordings, prepared.windows
    out: dict = {cell: {} for cell in cells}
    for fold in loco_folds(recs, val_fraction=config.split[1] / max(1e-9, config.split[0] + config.split[1]),
                           seed=config.seed, heldout_nonspeech=heldout_nonspeech):
        train = TrainSet.build(windows, recs, _indices(recs, fold["train"]))
        val = TrainSet.build(windows, recs, _indices(recs, fold["val"]), variants=False)
        for cell in cells:
            result = fit(config, cell, train, val, progress, label=f"{config.preset} {cell} -{fold['held_out']}")
            metrics, scores = evaluate(result.model, recs, windows, _indices(recs, fold["test"]),
                                       settings=config.features)
            nonspeech = None
            if fold["nonspeech_test"]:
                nonspeech = score_clips(result.model, recs, windows, _indices(recs, fold["nonspeech_test"]))
                metrics["heldout_nonspeech"] = _nonspeech_result(nonspeech)
            metrics["train_seconds"] = result.seconds
            metrics["epochs"] = len(result.history["loss"])
            out[cell][fold["held_out"]] = FoldResult(metrics, scores, result, nonspeech)
            _free(result)
    return out


def _nonspeech_result(scores: ClipScores) -> dict:
    """Held-out non-speech clips: how many got no gender, and which were given one."""
    given = [rec.path.name for rec, heard in zip(scores.recordings, scores.has_speech, strict=True) if heard]
    return {"clips": len(scores.recordings), "rejected": len(scores.recordings) - len(given), "given_gender": given}


def _free(result: FitResult) -> None:
    import keras

    result.model = None
    keras.backend.clear_session()


def _parity_sample(windows: Windows, indices: Sequence[int], count: int, seed: int) -> dict[str, np.ndarray]:
    """~count real clean test windows spread over their lengths, for the exporter's parity check."""
    wanted = set(indices)
    candidates = np.array([i for i, (r, v) in enumerate(zip(windows.recording, windows.variant, strict=True))
                           if r in wanted and v == 0], dtype=np.int64)
    rng = np.random.default_rng(seed)
    if candidates.size == 0:
        return {}
    lengths = windows.lengths[candidates]
    order = candidates[np.argsort(lengths + rng.random(lengths.size), kind="stable")]
    pick = order[np.linspace(0, order.size - 1, min(count, order.size)).astype(int)]
    out = {}
    for k, i in enumerate(pick):
        feats = windows.features[i]
        if k % 3 == 1 and feats.shape[0] > 20:  # some shorter crops too, as the runtime sees for short clips
            feats = feats[: int(rng.integers(16, feats.shape[0]))]
        out[f"features_{k}"] = np.ascontiguousarray(feats, dtype=np.float32)
    return out


def corpus_table(recordings: Sequence[Recording]) -> dict[str, dict]:
    """Files and speakers of each corpus, for the model card."""
    table: dict[str, dict] = {}
    for rec in recordings:
        row = table.setdefault(rec.corpus, {"files": 0, "female": set(), "male": set(), "kind": (
            "nonspeech" if not rec.is_speech else "children" if rec.is_child else "adult")})
        row["files"] += 1
        if rec.is_speech:
            row[rec.label].add(rec.group)
    return {name: {"files": row["files"], "speakers_female": len(row["female"]), "speakers_male": len(row["male"]),
                   "kind": row["kind"], "loco_group": LOCO_GROUPS.get(name, name)}
            for name, row in sorted(table.items())}


def _training_json(config: TrainConfig, cell: str, metrics: dict, manifest_sha: str, created: str,
                   corpora: dict | None = None, speech_threshold: float = SPEECH_THRESHOLD) -> dict:
    from .config import LICENSE

    speech_head = config.model_config(cell).speech_head
    return {
        "cell": cell,
        "outputs": [OUTPUT_NAME, SPEECH_OUTPUT_NAME] if speech_head else [OUTPUT_NAME],
        "model_config": config.model_config(cell).to_dict(),
        "feature_settings": config.features.to_dict(),
        "threshold": 0.5,
        "speech_threshold": speech_threshold,
        "metrics": metrics,
        "data_manifest_sha256": manifest_sha,
        "license": LICENSE,
        "created": created,
        "model_version": f"{created[:10].replace('-', '.')}-{config.preset}-{manifest_sha[:8]}",
        "preset": config.preset,
        "train_config": config.to_dict(),
        "corpora": corpora or {},
    }


def _summary_metrics(metrics: dict) -> dict:
    """The compact metrics that travel into the model's metadata."""
    keys = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "eer", "eer_threshold",
            "n_clips")
    return {k: metrics[k] for k in keys if k in metrics}


@dataclass
class _Run:
    """What the steps of one ``gvd train`` run share."""

    config: TrainConfig
    options: RunOptions
    prepared: Prepared
    created: str  # ISO time of the run, also in the model version
    out_dir: Path | None
    reports_root: Path

    @property
    def stamp(self) -> str:
        return self.created.replace("-", "").replace(":", "")

    def training_json(self, cell: str, metrics: dict, speech_threshold: float = SPEECH_THRESHOLD) -> dict:
        return _training_json(self.config, cell, metrics, self.prepared.manifest_sha256, self.created,
                              corpus_table(self.prepared.recordings), speech_threshold)


def run(config: TrainConfig, options: RunOptions) -> dict:
    """The whole of ``gvd train``. Returns the summary that is also written to disk."""
    from datetime import datetime, timezone

    from .data import manifest, speaker_split
    from .reports import write_json

    started = time.perf_counter()
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    prepared = prepare(config, options)
    recs = prepared.recordings
    summary = _new_summary(config, prepared, created)
    current = _Run(config, options, prepared, created, Path(options.out) if options.out else None,
                   Path(options.reports_dir))
    split = speaker_split(recs, config.split, seed=config.seed)
    final = _train_final(current, split, summary) if options.final else {}
    loco, tables = _run_all_loco(current, summary)
    report_dirs = _report_cells(current, final, loco, tables, summary)
    if tables:
        report_dirs["loco"] = _write_loco_tables(current, tables)
    summary["wall_seconds"] = time.perf_counter() - started
    summary["reports"] = {k: str(v) for k, v in report_dirs.items()}
    if current.out_dir is not None:
        write_json(current.out_dir / "run_summary.json", summary)
        write_json(current.out_dir / "data_manifest.json", manifest(recs))
    if options.mlflow:
        from .reports import log_mlflow

        summary["mlflow_run_id"] = log_mlflow(config, summary, recs, report_dirs, current.out_dir, options.cells)
    return summary


def _new_summary(config: TrainConfig, prepared: Prepared, created: str) -> dict:
    recs = prepared.recordings
    return {
        "preset": config.preset, "created": created, "n_recordings": len(recs),
        "corpora": sorted({r.corpus for r in recs}), "duplicates_dropped": prepared.dropped,
        "same_audio_merged": prepared.same_audio, "failed": prepared.failed,
        "extract_seconds": prepared.extract_seconds, "manifest_sha256": prepared.manifest_sha256,
        "cells": {}, "train_seconds": {}, "train_config": config.to_dict(),
    }


def _train_final(current: _Run, split: dict[str, list[Recording]], summary: dict) -> dict:
    """The deliverable model of each cell, trained on the speaker split: ``{cell: (metrics, scores, fit)}``."""
    from .evaluate import evaluate

    config, options = current.config, current.options
    recs, windows = current.prepared.recordings, current.prepared.windows
    test_idx = _indices(recs, split["test"])
    train = TrainSet.build(windows, recs, _indices(recs, split["train"]))
    val = TrainSet.build(windows, recs, _indices(recs, split["val"]), variants=False)
    final: dict = {}
    for cell in options.cells:
        result = fit(config, cell, train, val, options.progress, label=f"{config.preset} {cell} final")
        metrics, scores = evaluate(result.model, recs, windows, test_idx)
        metrics.update(train_seconds=result.seconds, epochs=len(result.history["loss"]),
                       best_epoch=result.best_epoch + 1, weight_bytes=result.weight_bytes)
        summary["train_seconds"][f"{cell}/final"] = result.seconds
        final[cell] = (metrics, scores, result)
        if current.out_dir is not None:
            _save_final_model(current, cell, current.out_dir / cell, result, metrics, test_idx)
        result.model = None
    return final


def _save_final_model(current: _Run, cell: str, cell_dir: Path, result: FitResult, metrics: dict,
                      test_idx: list[int]) -> None:
    """The Keras model, the exporter's parity and test windows, and a training.json without LOCO yet."""
    from .reports import write_json

    prepared = current.prepared
    cell_dir.mkdir(parents=True, exist_ok=True)
    result.model.save(cell_dir / "model.keras")
    parity = _parity_sample(prepared.windows, test_idx, current.options.parity_windows, current.config.seed)
    if parity:
        np.savez(cell_dir / "parity_windows.npz", **parity)
    write_test_windows(cell_dir, prepared.windows, prepared.recordings, test_idx)
    write_json(cell_dir / "training.json", current.training_json(cell, {"test": metrics, **_summary_metrics(metrics)}))


def _run_all_loco(current: _Run, summary: dict) -> tuple[dict, dict]:
    """LOCO of this preset (and of the original recipe with ``baseline``): ``({preset: {cell: {held_out:
    FoldResult}}}, {"markdown": table, "json": table, "speech_thresholds": {cell: choice}})``, both empty
    when LOCO is not run."""
    from .reports import loco_table

    config, options = current.config, current.options
    if not (options.loco and len(summary["corpora"]) >= 2):
        return {}, {}
    from .nonspeech import folder_corpus

    heldout = tuple(folder_corpus(f) for f in options.nonspeech) if config.nonspeech_fraction > 0 else ()
    loco = {config.preset: run_loco(config, current.prepared, options.cells, options.progress, heldout)}
    if options.baseline and config.preset != "original":
        loco["original"] = _baseline_loco(current)
    for preset_name, cells in loco.items():
        for cell, folds in cells.items():
            for held_out, fold in folds.items():
                summary["train_seconds"][f"{preset_name}/{cell}/loco-{held_out}"] = fold.fit.seconds
    md, table = loco_table({p: {c: {h: fold.metrics for h, fold in f.items()} for c, f in cells.items()}
                            for p, cells in loco.items()})
    thresholds = speech_threshold_choices(loco.get(config.preset, {}), config)
    md += _speech_threshold_text(thresholds)
    summary["loco"] = table
    if current.out_dir is not None:
        write_loco_clips(current.out_dir / "loco_clips.csv", loco)
    return loco, {"markdown": md, "json": table, "speech_thresholds": thresholds}


def read_loco_windows(path: Path) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """Per cell of a ``loco_clips.csv`` (default preset): the held-out speech clips' and non-speech
    clips' window p_speech, as :func:`write_loco_clips` wrote them."""
    import csv

    out: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["preset"] == "original":
                continue
            windows = np.array([float(v) for v in row["p_speech_windows"].split(";") if v])
            speech, nonspeech = out.setdefault(row["cell"], ([], []))
            (nonspeech if row["label"] == NONSPEECH else speech).append(windows)
    return out


def write_loco_clips(path: Path, loco: dict[str, dict[str, dict[str, FoldResult]]]) -> None:
    """Every held-out clip's p_female (empty: no gender) and, for each window the model judged in time
    order (``;``-separated), its p_speech, p_female and seconds of speech; one row per preset, cell and
    clip, the held-out non-speech clips included (label ``nonspeech``). The raw material for
    calibration studies (thresholds, per-corpus shifts, ensembles, clip-level speech rules), which the
    tables hide: the clip decision can be recomputed from the windows under any rule."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["preset", "cell", "held_out", "corpus", "speaker", "path", "label", "p_female",
                         "p_speech_windows", "p_female_windows", "speech_seconds_windows", "median_f0"])
        for preset_name, cells in loco.items():
            for cell, folds in cells.items():
                for held_out, fold in folds.items():
                    for scores in (fold.scores, fold.nonspeech):
                        if scores is None:
                            continue
                        none = [np.zeros(0)] * len(scores.recordings)
                        per_window = zip(scores.window_p_speech or none, scores.window_p_female or none,
                                         scores.window_speech or none, strict=True)
                        f0 = scores.median_f0 if scores.median_f0 is not None else np.full(len(scores.recordings),
                                                                                             np.nan)
                        for rec, p, windows, hz in zip(scores.recordings, scores.p_female, per_window, f0,
                                                       strict=True):
                            writer.writerow([preset_name, cell, held_out, rec.corpus, rec.speaker, str(rec.path),
                                             rec.label, "" if np.isnan(p) else f"{p:.6f}",
                                             *(_joined(values, digits) for values, digits in zip(windows, (4, 6, 2),
                                                                                                  strict=True)),
                                             "" if np.isnan(hz) else f"{hz:.1f}"])


def _joined(values: np.ndarray, digits: int) -> str:
    """Values ``;``-separated, NaN as nothing."""
    return ";".join("" if np.isnan(v) else f"{v:.{digits}f}" for v in values)


def _baseline_loco(current: _Run) -> dict:
    """The original recipe's LOCO with this run's seed and threads, for the side-by-side table."""
    from .config import preset as load_preset

    config, options = current.config, current.options
    original = replace(load_preset("original"), seed=config.seed, threads=config.threads, workers=config.workers)
    return run_loco(original, prepare(original, options), options.cells, options.progress)


def _report_cells(current: _Run, final: dict, loco: dict, tables: dict, summary: dict) -> dict[str, Path]:
    """Reports per cell, and the final training.json with LOCO numbers in it."""
    report_dirs: dict[str, Path] = {}
    for cell in current.options.cells:
        cell_loco = loco.get(current.config.preset, {}).get(cell, {})
        if cell in final:
            report_dirs[cell] = _report_final_cell(current, cell, final[cell], cell_loco, tables, summary)
        elif cell_loco:
            summary["cells"][cell] = {"loco": {h: fold.metrics for h, fold in cell_loco.items()}}
    return report_dirs


def _report_final_cell(current: _Run, cell: str, final_fit: tuple, cell_loco: dict[str, FoldResult], tables: dict,
                       summary: dict) -> Path:
    from .reports import write_cell_report, write_json

    metrics, scores, result = final_fit
    metrics_all = _metrics_with_loco(metrics, {h: fold.metrics for h, fold in cell_loco.items()})
    histories = {"final": result.history, **{f"loco-{h}": fold.fit.history for h, fold in cell_loco.items()}}
    folder = write_cell_report(current.reports_root / f"{cell}_{current.stamp}", cell, metrics_all, scores, 0.5,
                               histories, {h: fold.scores for h, fold in cell_loco.items()},
                               tables.get("markdown"), tables.get("json"))
    speech_threshold = SPEECH_THRESHOLD
    choice = tables.get("speech_thresholds", {}).get(cell)
    if choice is not None:
        metrics_all["speech_threshold"] = choice.to_dict()
        speech_threshold = choice.threshold
    summary["cells"][cell] = metrics_all
    if current.out_dir is not None:
        write_json(current.out_dir / cell / "training.json",
                   current.training_json(cell, metrics_all, speech_threshold))
    return folder


def speech_threshold_choices(cells: dict[str, dict[str, FoldResult]],
                             config: TrainConfig) -> dict[str, SpeechThresholdChoice]:
    """The speech threshold each cell with a speech output chooses on its folds (what its final model
    gets, in this run or when the folds are merged into its run)."""
    return {cell: speech_threshold_choice(folds) for cell, folds in cells.items()
            if folds and config.model_config(cell).speech_head}


def _speech_threshold_text(choices: dict[str, SpeechThresholdChoice]) -> str:
    """The chosen speech thresholds, for the LOCO report."""
    if not choices:
        return ""
    title = (f"Speech threshold these folds choose (the highest at which at most {SPEECH_LOSS_BUDGET:.1%} of "
             "the held-out speech clips lose their gender):")
    lines = [f"- {cell}: {c.threshold:.2f}; at it {c.speech_lost} of {c.speech_clips} held-out speech clips and "
             f"{c.nonspeech_rejected} of {c.nonspeech_clips} held-out non-speech clips get no gender"
             for cell, c in choices.items()]
    return "\n".join(["", title, "", *lines, ""])


def speech_threshold_choice(folds: dict[str, FoldResult]) -> SpeechThresholdChoice:
    """The speech threshold chosen on every held-out clip of a cell's leave-one-corpus-out folds."""
    speech = [p for fold in folds.values() for p in fold.scores.window_p_speech or []]
    nonspeech = [p for fold in folds.values() if fold.nonspeech is not None
                 for p in fold.nonspeech.window_p_speech or []]
    return choose_speech_threshold(speech, nonspeech)


def _metrics_with_loco(metrics: dict, loco_metrics: dict) -> dict:
    """The test metrics, the LOCO folds' and their summaries (the worst fold's balanced accuracy picks the default)."""
    from .reports import loco_summary

    metrics_all = {"test": metrics, "loco": loco_metrics, **_summary_metrics(metrics)}
    if loco_metrics:
        metrics_all.update(loco_summary(loco_metrics))
    return metrics_all


def _write_loco_tables(current: _Run, tables: dict) -> Path:
    from .reports import write_json

    folder = current.reports_root / f"loco_{current.stamp}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loco.md").write_text(tables["markdown"], encoding="utf-8")
    write_json(folder / "loco.json", tables["json"])
    if current.out_dir is not None:
        current.out_dir.mkdir(parents=True, exist_ok=True)  # a LOCO-only run has written nothing there yet
        (current.out_dir / "loco_table.md").write_text(tables["markdown"], encoding="utf-8")
    return folder
