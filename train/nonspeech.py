"""Non-speech for training the models' speech output: real sounds cut from installed packages, and
synthetic music, alarms and noise made here.

Nothing is downloaded. Real sounds come from folders of audio files already on the machine (e.g.
the Debian packages of game music and sound effects named in ``DEBIAN_SOURCES``); each file
gives a few excerpts. Synthetic clips cover what those lack: chords and melodies on several timbres,
drum patterns, sirens and beeps, noise beds, and speech-shaped noise that has speech's spectrum and
syllable rhythm but no voice. Everything is written as 16 kHz FLAC under a cache folder and then
read like any corpus (label ``nonspeech``), so feature extraction and its cache work unchanged.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.files import sha256_file

from .data import NONSPEECH, Recording

RATE = 16000


@dataclass(frozen=True)
class Source:
    """Sounds of one installed package: its folder, the package, and how many excerpts each file gives."""

    folder: str
    package: str
    excerpts: int = 3  # long music tracks give more (see MUSIC_EXCERPTS)


MUSIC_EXCERPTS = 8
# Installed by `apt-get install` of these packages (`make models`). The independent evaluation uses
# sound-theme-freedesktop, asc-music and drascula-music: never train on those. Tux Paint's stamps
# also hold spoken names (``*_desc*``, letters, numbers, holidays): only its animal, household,
# instrument, vehicle and weather sounds are taken, and spoken files are skipped everywhere.
DEBIAN_SOURCES = {
    "hyperrogue-music": Source("/usr/share/hyperrogue/music", "hyperrogue-music"),
    "colobot-common-sounds": Source("/usr/share/games/colobot/music", "colobot-common-sounds"),
    "heroes-sound-effects": Source("/usr/share/games/heroes/sfx", "heroes-sound-effects"),
    "heroes-sound-tracks": Source("/usr/share/games/heroes/mod", "heroes-sound-tracks"),
    "deepin-sound-theme": Source("/usr/share/sounds/deepin", "deepin-sound-theme"),
    "lomiri-sounds": Source("/usr/share/sounds/lomiri", "lomiri-sounds"),
    "hydrogen-drumkits": Source("/usr/share/hydrogen/data/drumkits", "hydrogen-drumkits"),
    "fb-music-high": Source("/usr/share/games/frozen-bubble", "fb-music-high"),
    # Calm instrumental and electronic music (what shops and phone queues play), game sound effects.
    "lincity-ng-music": Source("/usr/share/games/lincity-ng/music", "lincity-ng-data", MUSIC_EXCERPTS),
    "lincity-ng-sounds": Source("/usr/share/games/lincity-ng/sounds", "lincity-ng-data"),
    "warzone2100-music": Source("/usr/share/games/warzone2100/music", "warzone2100-music", MUSIC_EXCERPTS),
    "extremetuxracer-music": Source("/usr/share/games/etr/music", "extremetuxracer-data", MUSIC_EXCERPTS),
    "torus-trooper-music": Source("/usr/share/games/torus-trooper/sounds/musics", "torus-trooper-data",
                                  MUSIC_EXCERPTS),
    "pingus-sounds": Source("/usr/share/games/pingus/data/sounds", "pingus-data"),
    # Animals (hens, sheep, dogs, birds ...), household noises, single instruments.
    "tuxpaint-animals": Source("/usr/share/tuxpaint/stamps/animals", "tuxpaint-stamps-default"),
    "tuxpaint-household": Source("/usr/share/tuxpaint/stamps/household", "tuxpaint-stamps-default"),
    "tuxpaint-hobbies": Source("/usr/share/tuxpaint/stamps/hobbies", "tuxpaint-stamps-default"),
    "tuxpaint-vehicles": Source("/usr/share/tuxpaint/stamps/vehicles", "tuxpaint-stamps-default"),
    "tuxpaint-naturalforces": Source("/usr/share/tuxpaint/stamps/naturalforces", "tuxpaint-stamps-default"),
}
# The packages to install (the Makefile's list; a test keeps the two equal).
DEBIAN_PACKAGES = tuple(dict.fromkeys(source.package for source in DEBIAN_SOURCES.values()))
# Sources whose excerpts are also the beds of the speech-over-music augmentation (with the synthetic
# music). Fixed, so that adding non-speech sources does not change the augmented speech.
MUSIC_BEDS = ("hyperrogue-music", "fb-music-high", "heroes-sound-tracks")
SPOKEN_FILE = re.compile(r"_desc(_[a-z]{2,3}(_[A-Z]{2})?)?$")  # Tux Paint's spoken descriptions
EXCLUDED_PACKAGES = ("sound-theme-freedesktop", "asc-music", "drascula-music")
# Never trained on either: whole music tracks (orchestral, and electronic game music) that this
# project keeps as its own unseen check of the shipped models (`benchmarks/accuracy.py --nonspeech`).
HELD_OUT_PACKAGES = ("wesnoth-1.16-music", "planetblupi-music-ogg")
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".wav", ".flac", ".mp3")


@dataclass(frozen=True)
class NonspeechConfig:
    seconds: float = 6.0  # length of each excerpt or synthetic clip
    excerpts_per_file: int = 3
    synthetic: int = 400  # synthetic clips
    seed: int = 0


def _write(path: Path, y: np.ndarray) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0.99:
        y = y * (0.99 / peak)
    sf.write(path, y.astype(np.float32), RATE, format="FLAC", subtype="PCM_16")


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder``, spoken ones left out."""
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and not SPOKEN_FILE.search(p.stem))


def collect_excerpts(source: Path, out: Path, config: NonspeechConfig, excerpts: int | None = None) -> int:
    """Excerpts of every audio file under ``source`` into ``out``; returns how many were written."""
    from edge.audio import load_audio
    from edge.errors import AudioError

    files = _audio_files(source)
    per_file = excerpts or config.excerpts_per_file
    written = 0
    n = int(config.seconds * RATE)
    for path in files:
        target = out / f"{hashlib.sha1(str(path).encode()).hexdigest()[:10]}_{path.stem[:40]}"
        if list(out.glob(f"{target.name}_*.flac")):
            written += len(list(out.glob(f"{target.name}_*.flac")))
            continue
        try:
            y, _ = load_audio(path, RATE)
        except (AudioError, OSError, RuntimeError):
            continue
        if y.size < RATE // 2 or np.sqrt(np.mean(np.square(y))) < 1e-3:
            continue
        if y.size <= n:
            starts = [0]
        else:
            starts = np.linspace(0, y.size - n, min(per_file, 1 + y.size // n)).astype(int)
        for k, start in enumerate(starts):
            _write(out / f"{target.name}_{k}.flac", y[start : start + n])
            written += 1
    return written


# -- synthetic non-speech ---------------------------------------------------------------------------
def _envelope(n: int, attack: float, release: float) -> np.ndarray:
    t = np.arange(n) / RATE
    env = np.minimum(1.0, t / max(attack, 1e-3)) * np.exp(-t / max(release, 1e-3))
    return env


def _tone(freq: float, n: int, rng: np.random.Generator, timbre: str) -> np.ndarray:
    t = np.arange(n) / RATE
    if timbre == "sine":
        partials = [1.0]
    elif timbre == "square":
        partials = [1.0 / k if k % 2 else 0.0 for k in range(1, 12)]
    elif timbre == "saw":
        partials = [1.0 / k for k in range(1, 14)]
    else:  # plucked / bell-like: inharmonic decaying partials
        partials = [1.0, 0.6, 0.4, 0.25, 0.15]
    vibrato = 1.0 + (0.004 * np.sin(2 * np.pi * rng.uniform(4, 6) * t) if rng.random() < 0.3 else 0.0)
    y = np.zeros(n)
    for k, amp in enumerate(partials, start=1):
        f = freq * (k if timbre != "bell" else k * (1 + 0.01 * k * k))
        if amp and f < RATE / 2 - 200:
            y += amp * np.sin(2 * np.pi * f * np.cumsum(vibrato) / RATE + rng.uniform(0, 2 * np.pi))
    return y


def _melody(n: int, rng: np.random.Generator, chords: bool) -> np.ndarray:
    timbre = rng.choice(["sine", "square", "saw", "bell"])
    y = np.zeros(n)
    pos = 0
    base = rng.uniform(110, 440)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    tempo = rng.uniform(0.12, 0.6)
    while pos < n:
        length = int(RATE * tempo * rng.choice([0.5, 1, 1, 2]))
        length = min(length, n - pos)
        notes = [base * 2 ** (rng.choice(scale) / 12)]
        if chords:
            notes += [notes[0] * 2 ** (4 / 12), notes[0] * 2 ** (7 / 12)]
        segment = sum(_tone(f, length, rng, timbre) for f in notes) * _envelope(length, 0.01, rng.uniform(0.1, 1.5))
        y[pos : pos + length] += segment
        pos += length
    return y


def _drums(n: int, rng: np.random.Generator) -> np.ndarray:
    y = np.zeros(n)
    beat = int(RATE * rng.uniform(0.25, 0.6))
    for i, start in enumerate(range(0, n, beat // 2)):
        hit = min(n - start, int(0.3 * RATE))
        if i % 4 == 0:  # kick: a falling sine
            t = np.arange(hit) / RATE
            y[start : start + hit] += np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * np.exp(-t * 12)
        elif i % 2 == 0 or rng.random() < 0.4:  # snare / hat: a noise burst
            y[start : start + hit] += rng.standard_normal(hit) * _envelope(hit, 0.001, rng.uniform(0.02, 0.12)) * 0.5
    return y


def _alarm(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE
    if rng.random() < 0.5:  # siren sweeping between two pitches
        f = rng.uniform(500, 900) + rng.uniform(200, 600) * np.sin(2 * np.pi * rng.uniform(0.3, 2) * t)
        return np.sin(2 * np.pi * np.cumsum(f) / RATE)
    on = (np.floor(t * rng.uniform(2, 8)) % 2 == 0).astype(float)  # beeping
    return np.sin(2 * np.pi * rng.uniform(600, 3000) * t) * on


def _noise_bed(n: int, rng: np.random.Generator, speech_shaped: bool) -> np.ndarray:
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1 / RATE)
    if speech_shaped:  # long-term speech spectrum: flat to 500 Hz, then falling ~ 9 dB per octave
        spectrum *= 1.0 / np.maximum(1.0, f / 500.0) ** 1.5
    else:
        spectrum /= np.maximum(f, 20.0) ** rng.uniform(0, 1)
    y = np.fft.irfft(spectrum, n)
    rate = rng.uniform(3, 7) if speech_shaped else rng.uniform(0.1, 1)  # syllable rhythm, or slow swell
    t = np.arange(n) / RATE
    return y * (0.55 + 0.45 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)))


def synthetic_clip(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "melody":
        y = _melody(n, rng, chords=False)
    elif kind == "chords":
        y = _melody(n, rng, chords=True)
    elif kind == "band":
        y = _melody(n, rng, chords=True) + 0.6 * _drums(n, rng)
    elif kind == "drums":
        y = _drums(n, rng)
    elif kind == "alarm":
        y = _alarm(n, rng)
    elif kind == "speech_shaped":
        y = _noise_bed(n, rng, speech_shaped=True)
    else:
        y = _noise_bed(n, rng, speech_shaped=False)
    y = y / (np.sqrt(np.mean(y**2)) + 1e-9) * 10 ** (rng.uniform(-35, -12) / 20)
    return y.astype(np.float32)


SYNTHETIC_KINDS = ("melody", "chords", "band", "drums", "alarm", "speech_shaped", "noise")


def synthesize(out: Path, config: NonspeechConfig) -> int:
    n = int(config.seconds * RATE)
    for i in range(config.synthetic):
        kind = SYNTHETIC_KINDS[i % len(SYNTHETIC_KINDS)]
        path = out / kind / f"{kind}_{config.seed}_{i:04d}.flac"
        if not path.exists():
            _write(path, synthetic_clip(kind, n, np.random.default_rng([config.seed, i])))
    return config.synthetic


def prepare(cache: Path, sources: dict[str, Source] | None = None, config: NonspeechConfig = NonspeechConfig(),
            ) -> list[Recording]:
    """Write (once) and list the non-speech training clips: one corpus per source, plus synthetic."""
    sources = DEBIAN_SOURCES if sources is None else sources
    installed = {name: source for name, source in sources.items() if Path(source.folder).is_dir()}
    missing = sorted({source.package for name, source in sources.items() if name not in installed})
    if missing:
        # Said, not skipped in silence: without them the speech output sees far less real music.
        warnings.warn(f"non-speech training sources not installed: {', '.join(missing)}; the speech output "
                      f"trains without them (apt-get install {' '.join(missing)}, or 'make models')", stacklevel=2)
    recordings = []
    for name, source in sorted(installed.items()):
        out = cache / name
        collect_excerpts(Path(source.folder), out, config, source.excerpts)
        recordings += _listing(out, f"nonspeech_{name}")
    synthesize(cache / "synthetic", config)
    recordings += _listing(cache / "synthetic", "nonspeech_synthetic")
    return recordings


def folder_corpus(folder: str | Path) -> str:
    """The corpus name of a ``--nonspeech`` folder."""
    name = Path(folder).resolve().name
    return name if name.startswith(NONSPEECH) else f"{NONSPEECH}_{name}"


def load_folder(folder: str | Path, corpus: str | None = None) -> list[Recording]:
    """Any folder of non-speech audio (``gvd train --nonspeech DIR``). Pieces of one recording
    (``track_0.flac``, ``track_1.flac`` ...) are one source: splits and held-out folds keep them together."""
    return _listing(Path(folder), corpus or folder_corpus(folder), by_source=True)


def source_of(stem: str) -> str:
    """The recording a numbered piece was cut from: ``cold_day_3`` -> ``cold_day``, ``friction1`` -> ``friction``."""
    return re.sub(r"[_-]?\d+$", "", stem) or stem


def _listing(folder: Path, corpus: str, by_source: bool = False) -> list[Recording]:
    return [Recording(p, NONSPEECH, source_of(p.stem) if by_source else f"{corpus}/{p.stem}", corpus, sha256_file(p))
            for p in _audio_files(folder)]
