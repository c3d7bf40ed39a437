"""Waveform augmentation that breaks the shortcuts in the shared data.

The Indonesian corpus confounds codec with gender (female files are often band-limited Opus),
RAVDESS is studio-clean and Urdu is TV audio. Most transforms here change the channel (room,
microphone, codec, bandwidth, noise, level) and not the voice. Two change the voice: an optional
speed perturbation of at most +-10 % (a similar new speaker), and an optional pitch shift that keeps
the vocal tract (a man speaking higher, a woman lower: pitch alone stops telling the sexes apart).
All functions take and return mono float32 at ``sr`` and draw randomness only from ``rng``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each channel transform; ``variants`` augmented copies per file."""

    variants: int = 3
    p_reverb: float = 0.35
    rt60: tuple[float, float] = (0.15, 0.7)
    p_eq: float = 0.6
    eq_db: float = 8.0
    p_noise: float = 0.5
    snr_db: tuple[float, float] = (5.0, 30.0)
    p_band_limit: float = 0.5
    cutoffs_hz: tuple[float, ...] = (3400.0, 4000.0, 5500.0, 7000.0)
    p_codec: float = 0.35
    codecs: tuple[str, ...] = ("opus", "aac", "mp3")
    p_telephone: float = 0.1
    gain_db: tuple[float, float] = (-25.0, 6.0)
    # Speed perturbation (Kaldi-style): scales pitch and formants together by the factor, i.e. a
    # new, similar speaker. +-10 % is under 2 semitones: far too little to change apparent gender.
    p_speed: float = 0.0
    speed: tuple[float, float] = (0.9, 1.1)
    # Pitch moved by up to this many octaves either way with the spectral envelope (formants, vocal
    # tract length) kept, through the WORLD vocoder. The corpora hold few low-pitched women and few
    # raised-voice men, so a model learns "high pitch = female"; shifted copies with their true label
    # make it look at the envelope too.
    p_pitch: float = 0.0
    pitch_octaves: tuple[float, float] = (-0.7, 0.7)
    # Music or other sounds under the voice (a shop, a kiosk): speech over music is still speech.
    p_music: float = 0.0
    music_snr_db: tuple[float, float] = (0.0, 20.0)
    music_files: tuple[str, ...] = ()
    # Cheap-microphone faults: hard clipping after a drive of x2-x30, and a DC offset.
    p_clip: float = 0.0
    clip_drive: tuple[float, float] = (2.0, 30.0)
    p_dc: float = 0.0
    dc_offset: tuple[float, float] = (0.005, 0.08)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        data = dict(data)
        for key in ("rt60", "snr_db", "cutoffs_hz", "codecs", "gain_db", "speed", "pitch_octaves", "music_snr_db",
                    "music_files", "clip_drive", "dc_offset"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data)


def _rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0


def change_speed(y: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Play ``y`` ``factor`` times faster: duration / factor, pitch and formants x factor."""
    import soxr

    return soxr.resample(np.asarray(y, dtype=np.float32), sr, int(round(sr / factor)), quality="HQ")


def shift_pitch(y: np.ndarray, sr: int, octaves: float) -> np.ndarray:
    """Move the pitch by ``octaves`` and keep the spectral envelope and aperiodicity (WORLD vocoder).

    DIO + StoneMask for F0 (31 ms against Harvest's 590 ms on a 4 s clip; an augmentation tolerates its voicing
    errors), CheapTrick for the envelope, D4C for aperiodicity. Same length as ``y``.
    """
    try:
        import pyworld
    except ImportError as exc:  # a training extra; only this augmentation needs it
        raise ImportError("pitch augmentation (augment.p_pitch) needs pyworld: pip install 'gvd[train]'") from exc
    x = np.asarray(y, dtype=np.float64)
    f0, times = pyworld.dio(x, sr, frame_period=5.0)
    f0 = pyworld.stonemask(x, f0, times, sr)
    envelope = pyworld.cheaptrick(x, f0, times, sr)
    aperiodicity = pyworld.d4c(x, f0, times, sr)
    out = pyworld.synthesize(f0 * 2.0**octaves, envelope, aperiodicity, sr, 5.0)
    fitted = np.zeros(len(x))
    fitted[: min(len(x), len(out))] = out[: len(x)]
    # WORLD's output level follows the envelope, not the input: match the input's RMS.
    return (fitted * (_rms(y) / (_rms(fitted) + 1e-12))).astype(np.float32)


def band_limit(y: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """Remove everything above ``cutoff_hz`` by resampling to twice the cutoff and back (like an
    8 kHz phone path or a narrow-band codec)."""
    import soxr

    low_rate = int(2 * cutoff_hz)
    if low_rate >= sr:
        return np.asarray(y, dtype=np.float32)
    down = soxr.resample(np.asarray(y, dtype=np.float32), sr, low_rate, quality="VHQ")
    up = soxr.resample(down, low_rate, sr, quality="VHQ")
    out = np.zeros(len(y), dtype=np.float32)
    n = min(len(y), len(up))
    out[:n] = up[:n]
    return out


def high_pass(y: np.ndarray, sr: int, cutoff_hz: float) -> np.ndarray:
    """Zero the spectrum below ``cutoff_hz`` (phones and codecs drop the lowest frequencies)."""
    spectrum = np.fft.rfft(np.asarray(y, dtype=np.float64))
    freqs = np.fft.rfftfreq(len(y), 1.0 / sr)
    spectrum[freqs < cutoff_hz] *= np.clip(freqs[freqs < cutoff_hz] / cutoff_hz, 0, 1) ** 4
    return np.fft.irfft(spectrum, n=len(y)).astype(np.float32)


def random_eq(y: np.ndarray, sr: int, rng: np.random.Generator, max_db: float = 8.0) -> np.ndarray:
    """Microphone colouring: a smooth random gain curve (+-max_db at log-spaced points) over frequency."""
    spectrum = np.fft.rfft(np.asarray(y, dtype=np.float64))
    freqs = np.fft.rfftfreq(len(y), 1.0 / sr)
    points = np.geomspace(60.0, sr / 2, 9)
    gains_db = rng.uniform(-max_db, max_db, size=points.size)
    curve = np.interp(np.log(np.maximum(freqs, 1.0)), np.log(points), gains_db)
    return np.fft.irfft(spectrum * 10.0 ** (curve / 20.0), n=len(y)).astype(np.float32)


def synthetic_reverb(y: np.ndarray, sr: int, rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A small room: direct sound plus exponentially decaying noise (decay set by ``rt60``)."""
    from scipy.signal import fftconvolve

    length = int(sr * min(rt60 * 1.2, 1.0))
    t = np.arange(length) / sr
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * sr)] = 0.0  # first reflections arrive after the direct path
    ir = tail * rng.uniform(0.1, 0.4) / (np.sqrt(np.sum(tail**2)) + 1e-9)
    ir[0] = 1.0
    wet = fftconvolve(np.asarray(y, dtype=np.float64), ir)[: len(y)]
    return (wet * (_rms(y) / (_rms(wet) + 1e-12))).astype(np.float32)


def coloured_noise(n: int, rng: np.random.Generator, colour: str) -> np.ndarray:
    """White, pink (1/f) or brown (1/f^2) noise of unit RMS."""
    white = rng.standard_normal(n)
    if colour == "white":
        noise = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.arange(spectrum.size, dtype=np.float64)
        f[0] = 1.0
        spectrum /= f ** (0.5 if colour == "pink" else 1.0)
        noise = np.fft.irfft(spectrum, n=n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def add_noise(y: np.ndarray, rng: np.random.Generator, snr_db: float, colour: str = "pink") -> np.ndarray:
    """Background noise at ``snr_db`` relative to the signal's RMS."""
    level = _rms(y) / (10.0 ** (snr_db / 20.0))
    return (y + level * coloured_noise(len(y), rng, colour)).astype(np.float32)


@lru_cache(maxsize=64)
def _music(path: str, sr: int) -> np.ndarray:
    from edge.audio import load_audio

    return load_audio(path, sr)[0]


def add_music(y: np.ndarray, sr: int, rng: np.random.Generator, files: tuple[str, ...], snr_db: float) -> np.ndarray:
    """A random excerpt of a random file from ``files`` under the voice at ``snr_db``."""
    music = _music(str(rng.choice(files)), sr)
    if music.size == 0 or _rms(music) < 1e-6:
        return y
    if music.size < y.size:
        music = np.tile(music, int(np.ceil(y.size / music.size)))
    start = int(rng.integers(0, music.size - y.size + 1))
    bed = music[start : start + y.size]
    level = _rms(y) / (10.0 ** (snr_db / 20.0)) / (_rms(bed) + 1e-9)
    return (y + level * bed).astype(np.float32)


def clip(y: np.ndarray, drive: float) -> np.ndarray:
    """An overdriven input stage: ``drive`` times louder, then cut at full scale."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return np.clip(y / max(peak, 1e-9) * drive, -1.0, 1.0).astype(np.float32)


def mu_law(y: np.ndarray, bits: int = 8) -> np.ndarray:
    """G.711-style companding quantisation (the telephone network)."""
    mu = 2**bits - 1
    y = np.clip(y, -1.0, 1.0)
    encoded = np.sign(y) * np.log1p(mu * np.abs(y)) / np.log1p(mu)
    quantised = np.round((encoded + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(quantised) * ((1 + mu) ** np.abs(quantised) - 1) / mu).astype(np.float32)


_CODEC_SETTINGS = {
    # codec -> (PyAV encoder, container, sample rate, bit rates): WhatsApp voice notes are 16 kHz Opus.
    "opus": ("libopus", "ogg", 16000, (12000, 16000, 24000, 32000)),
    "aac": ("aac", "adts", 16000, (24000, 32000, 48000, 64000)),
    "mp3": ("libmp3lame", "mp3", 16000, (24000, 32000, 48000)),
}


def codec_roundtrip(y: np.ndarray, sr: int, codec: str, bit_rate: int) -> np.ndarray:
    """Encode with a real lossy codec (FFmpeg through PyAV) and decode again, all in memory."""
    import io

    import av

    encoder, container_format, _, _ = _CODEC_SETTINGS[codec]
    buffer = io.BytesIO()
    pcm = (np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(buffer, mode="w", format=container_format) as out:
        stream = out.add_stream(encoder, rate=sr)
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buffer.seek(0)
    parts = []
    with av.open(buffer, mode="r") as inp:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        for frame in inp.decode(audio=0):
            for res in resampler.resample(frame):
                parts.append(res.to_ndarray().reshape(-1))
        for res in resampler.resample(None):
            parts.append(res.to_ndarray().reshape(-1))
    decoded = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    # Codecs add some priming delay (AAC: 1024 samples): align by cross-correlation, up to 100 ms.
    best = _align_offset(y, decoded, max_shift=int(0.1 * sr))
    decoded = decoded[best:]
    out = np.zeros(len(y), dtype=np.float32)
    out[: min(len(y), len(decoded))] = decoded[: len(y)]
    return out


def _align_offset(reference: np.ndarray, delayed: np.ndarray, max_shift: int) -> int:
    n = min(len(reference), len(delayed) - max_shift, 16000)
    if n <= 0:
        return 0
    from scipy.signal import correlate

    scores = correlate(delayed[: n + max_shift].astype(np.float64), reference[:n].astype(np.float64),
                       mode="valid", method="fft")
    return int(np.argmax(scores))


def augment(y: np.ndarray, sr: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One random variation: speed -> room -> microphone -> background noise -> bandwidth/codec -> level."""
    y = np.asarray(y, dtype=np.float32)
    if y.size == 0:
        return y
    # The stages draw from ``rng`` in this order; changing it changes every augmented copy.
    y = _speaker_and_room(y, sr, rng, config)
    y = _background(y, sr, rng, config)
    y = _transmission(y, sr, rng, config)
    y = _level(y, rng, config)
    return _microphone_faults(y, rng, config)


def _speaker_and_room(y: np.ndarray, sr: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    # Guarded so that p_speed=0 and p_pitch=0 draw nothing: the other transforms see the same random stream as before.
    if config.p_speed and rng.random() < config.p_speed:
        y = change_speed(y, sr, float(rng.uniform(*config.speed)))
    if config.p_pitch and rng.random() < config.p_pitch:
        y = shift_pitch(y, sr, float(rng.uniform(*config.pitch_octaves)))
    if rng.random() < config.p_reverb:
        y = synthetic_reverb(y, sr, rng, float(rng.uniform(*config.rt60)))
    if rng.random() < config.p_eq:
        y = random_eq(y, sr, rng, config.eq_db)
    return y


def _background(y: np.ndarray, sr: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    if config.p_music and config.music_files and rng.random() < config.p_music:
        y = add_music(y, sr, rng, config.music_files, float(rng.uniform(*config.music_snr_db)))
    if rng.random() < config.p_noise:
        y = add_noise(y, rng, float(rng.uniform(*config.snr_db)), str(rng.choice(["white", "pink", "brown"])))
    return y


def _transmission(y: np.ndarray, sr: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A narrower band, a lossy codec and/or a telephone line."""
    if rng.random() < config.p_band_limit:
        y = band_limit(y, sr, float(rng.choice(config.cutoffs_hz)))
    if config.codecs and rng.random() < config.p_codec:
        y = _random_codec(y, sr, rng, config.codecs)
    if rng.random() < config.p_telephone:
        y = mu_law(high_pass(band_limit(y, sr, 3400.0), sr, 300.0))
    return y


def _random_codec(y: np.ndarray, sr: int, rng: np.random.Generator, codecs: tuple[str, ...]) -> np.ndarray:
    codec = str(rng.choice(codecs))
    rate = int(rng.choice(_CODEC_SETTINGS[codec][3]))
    try:
        return codec_roundtrip(y, sr, codec, rate)
    except Exception:  # an FFmpeg build without this encoder: fall back to a band limit
        return band_limit(y, sr, 4000.0)


def _level(y: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A random gain, held below clipping."""
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    gain = 10.0 ** (rng.uniform(*config.gain_db) / 20.0)
    if peak * gain > 0.99:
        gain = 0.99 / max(peak, 1e-9)
    return np.nan_to_num(y * gain).astype(np.float32)


def _microphone_faults(y: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Hard clipping and a DC offset, as cheap microphones add them."""
    if config.p_clip and rng.random() < config.p_clip:
        y = clip(y, float(rng.uniform(*config.clip_drive)))
    if config.p_dc and rng.random() < config.p_dc:
        y = (y + float(rng.choice([-1, 1]) * rng.uniform(*config.dc_offset))).astype(np.float32)
    return y
