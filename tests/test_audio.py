"""Decoding any file or array to 16 kHz mono float32, and a specific error for every kind of bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.audio import AUDIO_EXTENSIONS, iter_mono, load_audio, open_audio, prepare_array, resample
from edge.errors import (
    AudioError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    NotAudioError,
)

SR = 16000


def tone(freq: float, rate: int, seconds: float, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.repeat(mono[:, None], channels, axis=1)


def peak_hz(y: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / rate)[np.argmax(spectrum)])


def encode_with_pyav(path: Path, codec: str, samples: np.ndarray, rate: int, layout: str = "mono") -> None:
    """Write a compressed file with PyAV (the decoder under test reads it back)."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        fmt = stream.codec_context.format.name
        frame_size = stream.codec_context.frame_size or 1024
        channels = 1 if layout == "mono" else 2
        data = samples if samples.ndim == 2 else samples[:, None]
        data = np.repeat(data, channels, axis=1) if data.shape[1] != channels else data
        for start in range(0, len(data), frame_size):
            block = data[start : start + frame_size].astype(np.float32)
            if fmt.startswith("s16"):
                block = (block * 32767).astype(np.int16)
            elif fmt.startswith("s32"):
                block = (block * 2147483647).astype(np.int32)
            block = np.ascontiguousarray(block)
            planar = fmt.endswith("p")
            array = block.T.copy() if planar else block.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(array, format=fmt, layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


# ------------------------------------------------------------------ good files of every kind

@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_sample_formats(tmp_path, subtype):
    path = tmp_path / f"tone_{subtype}.wav"
    sf.write(path, tone(440, 22050, 1.0), 22050, subtype=subtype)
    y, info = load_audio(path)
    assert y.dtype == np.float32 and info.sample_rate == 22050 and info.channels == 1
    assert abs(len(y) - SR) <= 2
    assert abs(peak_hz(y) - 440) < 2
    assert 0.45 < np.max(np.abs(y)) < 0.55


@pytest.mark.parametrize("fmt,subtype,ext", [("FLAC", "PCM_16", ".flac"), ("FLAC", "PCM_24", ".flac"),
                                             ("OGG", "VORBIS", ".ogg")])
def test_flac_and_ogg(tmp_path, fmt, subtype, ext):
    path = tmp_path / f"tone{ext}"
    sf.write(path, tone(1000, 44100, 1.0, channels=2), 44100, format=fmt, subtype=subtype)
    y, info = load_audio(path)
    assert info.channels == 2 and info.sample_rate == 44100
    assert abs(peak_hz(y) - 1000) < 2 and abs(len(y) - SR) <= 2


@pytest.mark.parametrize("codec,ext,layout", [("aac", ".m4a", "mono"), ("aac", ".m4a", "stereo"),
                                              ("libopus", ".opus", "mono"), ("libmp3lame", ".mp3", "stereo"),
                                              ("aac", ".mp4", "stereo")])
def test_compressed_formats(tmp_path, codec, ext, layout):
    path = tmp_path / f"tone{ext}"
    rate = 48000
    encode_with_pyav(path, codec, tone(800, rate, 2.0), rate, layout)
    y, info = load_audio(path)
    assert info.channels == (1 if layout == "mono" else 2)
    assert info.sample_rate == rate
    assert abs(len(y) / SR - 2.0) < 0.1  # codec priming/padding adds a few ms at most
    assert abs(peak_hz(y) - 800) < 3


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 192000])
def test_resampled_sine_keeps_its_frequency(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, tone(1000, rate, 2.0), rate, subtype="PCM_16")
    y, info = load_audio(path)
    assert info.sample_rate == rate
    assert abs(len(y) - 2 * SR) <= 2
    assert abs(peak_hz(y) - 1000) < 1
    # A band-limited resampler keeps the level (no droop at 1 kHz) and adds no aliases.
    steady = y[SR // 4 : -SR // 4]
    assert np.sqrt(np.mean(steady**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_high_rate_content_above_8k_is_removed(tmp_path):
    # 12 kHz at 192 kHz cannot exist at 16 kHz; it must vanish, not alias to 4 kHz.
    path = tmp_path / "ultrasonic.wav"
    sf.write(path, tone(12000, 192000, 1.0), 192000, subtype="PCM_24")
    y, _ = load_audio(path)
    assert np.sqrt(np.mean(y**2)) < 1e-3


def test_six_channels_are_averaged(tmp_path):
    rate = 48000
    data = np.zeros((rate, 6), np.float32)
    data[:, 0] = tone(500, rate, 1.0)
    data[:, 3] = tone(500, rate, 1.0)
    path = tmp_path / "surround.wav"
    sf.write(path, data, rate, subtype="FLOAT")
    y, info = load_audio(path)
    assert info.channels == 6
    # Two of six channels carry the tone: the mean has a third of its amplitude.
    assert np.max(np.abs(y[1000:-1000])) == pytest.approx(0.5 / 3, rel=0.02)


def test_tenth_of_a_second(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(300, 44100, 0.1), 44100)
    y, _ = load_audio(path)
    assert abs(len(y) - 1600) <= 2


def test_iter_mono_blocks_equal_whole_file(tmp_path, rng):
    path = tmp_path / "noise.flac"
    sf.write(path, (0.1 * rng.standard_normal((44100 * 25, 2))).astype(np.float32), 44100, subtype="PCM_16")
    info, blocks = iter_mono(path, block_seconds=3.0)
    parts = list(blocks)
    assert len(parts) > 5 and info.duration == pytest.approx(25.0)
    whole, _ = load_audio(path)
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    assert abs(len(whole) - 25 * SR) <= 2


# ------------------------------------------------------------------ arrays

def test_prepare_array_int16_stereo():
    data = (tone(1000, 8000, 1.0, channels=2) * 32767).astype(np.int16)
    y = prepare_array(data, 8000)
    assert y.dtype == np.float32 and abs(len(y) - SR) <= 2
    assert abs(peak_hz(y) - 1000) < 1 and np.max(np.abs(y)) == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_prepare_array_refuses_non_finite(bad):
    y = tone(200, SR, 0.5)
    y[100] = bad
    with pytest.raises(InvalidSamplesError):
        prepare_array(y, SR)


def test_prepare_array_refuses_empty_and_bad_rates():
    with pytest.raises(EmptyAudioError):
        prepare_array(np.zeros(0, np.float32), SR)
    for rate in (0, -16000, 16000.5):
        with pytest.raises(InvalidSamplesError):
            prepare_array(np.zeros(100, np.float32), rate)  # type: ignore[arg-type]
    with pytest.raises(InvalidSamplesError):
        prepare_array(np.zeros((2, 3, 4), np.float32), SR)


def test_resample_identity_and_length():
    y = tone(440, SR, 1.0)
    assert resample(y, SR, SR) is not None and np.array_equal(resample(y, SR, SR), y)
    assert abs(len(resample(y, SR, 48000)) - 48000) <= 2


# ------------------------------------------------------------------ bad files

def test_empty_file(tmp_path):
    for ext in (".wav", ".m4a"):
        path = tmp_path / f"empty{ext}"
        path.write_bytes(b"")
        with pytest.raises(EmptyAudioError):
            load_audio(path)


@pytest.mark.parametrize("ext", [".wav", ".mp3", ".flac", ".m4a", ".opus"])
def test_text_with_an_audio_extension(tmp_path, ext):
    path = tmp_path / f"notes{ext}"
    path.write_text("these are meeting notes, not a recording\n" * 50)
    with pytest.raises(NotAudioError):
        load_audio(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(IsADirectoryError):
        load_audio(tmp_path)


def _flac(tmp_path, rng) -> Path:
    path = tmp_path / "speechlike.flac"
    sf.write(path, (0.2 * rng.standard_normal(SR * 5)).astype(np.float32), SR, subtype="PCM_16")
    return path


def test_truncated_flac_keeps_what_is_there_or_says_corrupt(tmp_path, rng):
    path = _flac(tmp_path, rng)
    data = path.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    try:
        y, _ = load_audio(cut)
    except CorruptAudioError:
        return  # an explicit "damaged" is a fine answer too
    # libsndfile stops at the cut: about half of the 5 s survive, all finite.
    assert 1.0 < len(y) / SR < 4.0 and np.isfinite(y).all()


def test_flac_header_garbled(tmp_path, rng):
    path = _flac(tmp_path, rng)
    data = bytearray(path.read_bytes())
    data[4:60] = bytes(56)  # wipe STREAMINFO
    bad = tmp_path / "garbled.flac"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptAudioError):
        load_audio(bad)


def test_flac_garbled_in_the_middle(tmp_path, rng):
    path = _flac(tmp_path, rng)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    bad = tmp_path / "garbled_mid.flac"
    bad.write_bytes(bytes(data))
    try:
        y, _ = load_audio(bad)
    except CorruptAudioError:
        return
    assert np.isfinite(y).all() and len(y) > SR


def _m4a(tmp_path) -> Path:
    path = tmp_path / "tone.m4a"
    encode_with_pyav(path, "aac", tone(600, 48000, 4.0), 48000)
    return path


def test_truncated_m4a(tmp_path):
    data = _m4a(tmp_path).read_bytes()
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(data[: len(data) // 3])
    try:
        y, _ = load_audio(cut)
    except (CorruptAudioError, EmptyAudioError):
        return
    assert np.isfinite(y).all()


def test_m4a_with_damaged_packets_is_decoded_around_them(tmp_path, rng):
    path = _m4a(tmp_path)
    data = bytearray(path.read_bytes())
    # Garble a stretch of the middle of the file (the 'mdat' payload), not the index.
    mdat = bytes(data).find(b"mdat")
    assert mdat > 0
    start = mdat + (len(data) - mdat) // 2
    data[start : start + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.m4a"
    bad.write_bytes(bytes(data))
    y, _ = load_audio(bad)
    assert np.isfinite(y).all()
    assert len(y) / SR > 2.0  # most of the 4 s survive
    assert abs(peak_hz(y) - 600) < 3


def test_m4a_header_garbled(tmp_path):
    data = bytearray(_m4a(tmp_path).read_bytes())
    data[:64] = b"\x00" * 64
    bad = tmp_path / "nohead.m4a"
    bad.write_bytes(bytes(data))
    with pytest.raises(AudioError):
        load_audio(bad)


def test_mp3_with_damaged_first_frame(tmp_path):
    path = tmp_path / "tone.mp3"
    encode_with_pyav(path, "libmp3lame", tone(700, 44100, 3.0), 44100)
    data = bytearray(path.read_bytes())
    sync = next(i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0)
    data[sync + 4 : sync + 200] = b"\xff" * 196  # the first frame's payload becomes garbage
    bad = tmp_path / "damaged.mp3"
    bad.write_bytes(bytes(data))
    y, _ = load_audio(bad)
    assert len(y) / SR > 2.5 and abs(peak_hz(y) - 700) < 3


def test_nan_in_float_wav(tmp_path):
    y = tone(440, SR, 1.0)
    y[5000:5010] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError):
        load_audio(path)
    y[5000:5010] = np.inf
    sf.write(path, y, SR, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError):
        load_audio(path)


def test_only_integer_subtypes_skip_the_nan_scan(tmp_path):
    """The subtypes that skip the scan are libsndfile's integer ones; a float FLAC or Ogg is still scanned."""
    from edge.audio import INTEGER_SUBTYPES

    assert INTEGER_SUBTYPES <= set(sf.available_subtypes())
    assert not INTEGER_SUBTYPES & {"FLOAT", "DOUBLE", "VORBIS", "OPUS", "MPEG_LAYER_III"}
    for subtype in sorted(INTEGER_SUBTYPES & set(sf.available_subtypes("WAV"))):
        path = tmp_path / f"{subtype}.wav"
        sf.write(path, tone(440, SR, 0.5), SR, subtype=subtype)
        y, info = load_audio(path)
        assert info.codec == subtype and len(y) == SR // 2 and np.isfinite(y).all()


def test_header_only_wav_is_empty(tmp_path):
    path = tmp_path / "header.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(EmptyAudioError):
        load_audio(path)


def test_all_zero_audio_decodes(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(SR * 2, np.float32), SR, subtype="PCM_16")
    y, _ = load_audio(path)
    assert len(y) == 2 * SR and not np.any(y)


# ------------------------------------------------------------------ bounded memory

# VmHWM, the peak RSS of this process's own memory map. Not ru_maxrss: that one starts at the
# forking parent's size, so under a large pytest process (TensorFlow loaded) it never moved (seen: 0 B).
_RSS_PROBE = textwrap.dedent("""
    import sys
    import numpy as np
    from edge.audio import iter_mono
    def peak_rss_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    before = peak_rss_kb()
    info, blocks = iter_mono(sys.argv[1])
    samples, peak, kept = 0, 0.0, []
    for block in blocks:
        samples += block.size
        peak = max(peak, float(np.abs(block).max()))
        if sys.argv[2] == "keep":  # control: holding every block must show up in the measurement
            kept.append(block)
    after = peak_rss_kb()
    print(samples, (after - before) * 1024, peak)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_one_hour_file_streams_in_bounded_memory(tmp_path, rng):
    rate, seconds = 44100, 3600
    path = tmp_path / "hour.wav"
    block = (0.1 * rng.standard_normal(rate * 10) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as handle:
        for _ in range(seconds // 10):
            handle.write(block)
    # Import numpy/soxr before measuring so only the decoding itself is counted.
    probe = "import numpy, soxr, soundfile\n" + _RSS_PROBE
    decoded_bytes = seconds * SR * 4  # the whole hour as 16 kHz float32: 230 MB
    grown = {}
    for mode in ("stream", "keep"):
        out = subprocess.run([sys.executable, "-c", probe, str(path), mode], capture_output=True, text=True,
                             check=True)
        samples, grown[mode], peak = out.stdout.split()
        assert abs(int(samples) - seconds * SR) <= 16
        assert 0.2 < float(peak) <= 1.0
    assert int(grown["stream"]) < decoded_bytes / 10, f"peak RSS grew by {int(grown['stream']) / 1e6:.0f} MB"
    # Control: the probe does see memory that is really held.
    assert int(grown["keep"]) > decoded_bytes / 2


def test_every_extension_is_routed(tmp_path):
    assert {".wav", ".flac", ".ogg", ".m4a", ".opus", ".mp3", ".mp4"} <= AUDIO_EXTENSIONS


@pytest.mark.shared
def test_every_shared_file_decodes(shared_data):
    files = sorted(p for p in shared_data.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    assert len(files) > 1900
    failures = []
    for path in files:
        try:
            y, info = load_audio(path)
        except AudioError as exc:
            failures.append(f"{path.relative_to(shared_data)}: {exc}")
            continue
        # Some recordings really are short (a 0.2 s Thai clip): what counts is that all of it decodes.
        # Codec priming and padding move compressed files by a few tens of ms.
        if abs(y.size - info.duration * SR) > 0.1 * SR or not np.isfinite(y).all() or info.warnings:
            failures.append(f"{path.relative_to(shared_data)}: {y.size} samples of {info.duration} s {info.warnings}")
    assert not failures, failures


# ------------------------------------------------------------------ truncated files say so

def _cut(path: Path, fraction: float, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def test_truncated_wav_is_decoded_and_flagged(tmp_path, rng):
    whole = tmp_path / "whole.wav"
    sf.write(whole, (0.2 * rng.standard_normal(SR * 4)).astype(np.float32), SR, subtype="PCM_16")
    cut = _cut(whole, 1 / 3, tmp_path / "cut.wav")
    y, info = load_audio(cut)
    assert abs(len(y) / SR - 4 / 3) < 0.01
    assert info.warnings == ["truncated: the header promises 4.00 s, the file holds 1.33 s"]
    assert load_audio(whole)[1].warnings == []


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("AIFF", "aiff")])
@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_pcm_gives_libsndfiles_floats_to_the_bit(tmp_path, fmt, ext, channels):
    """16-bit PCM is read as integers and scaled by the decoder: every value as libsndfile's float read."""
    values = np.arange(-32768, 32768, dtype=np.int16)
    path = tmp_path / f"every_value.{ext}"
    sf.write(path, np.stack([values, values[::-1]], axis=1)[:, :channels], SR, format=fmt, subtype="PCM_16")
    _, blocks = open_audio(path, block_seconds=1.0)
    decoded = np.concatenate(list(blocks))
    expected = sf.read(path, dtype="float32", always_2d=True)[0]
    assert decoded.dtype == np.float32 and decoded.shape == expected.shape
    assert decoded.tobytes() == expected.tobytes()


def test_cut_16_bit_flac_keeps_the_exact_samples_before_the_cut(tmp_path, rng):
    whole = tmp_path / "whole.flac"
    sf.write(whole, rng.integers(-20000, 20000, SR * 4, dtype=np.int16), SR, subtype="PCM_16")
    y, info = load_audio(_cut(whole, 0.5, tmp_path / "cut.flac"))
    assert info.warnings and 1.0 < len(y) / SR < 3.0
    assert y.tobytes() == sf.read(whole, dtype="float32")[0][: len(y)].tobytes()


def test_flac_cut_in_half_keeps_the_frames_that_are_there(tmp_path):
    source = Path(__file__).resolve().parent.parent / "models" / "samples" / "male_48k.flac"
    cut = _cut(source, 0.5, tmp_path / "half.flac")
    y, info = load_audio(cut)
    full, _ = load_audio(source)
    assert 1.2 < len(y) / SR < 2.2  # about half of 3.4 s
    assert len(info.warnings) == 1 and info.warnings[0].startswith("truncated or damaged: decoding stopped at ")
    # What decodes is the original audio (away from the resampler's tail at the cut).
    np.testing.assert_allclose(y[: len(y) - 200], full[: len(y) - 200], atol=1e-5)


def test_truncation_reaches_the_prediction(tmp_path):
    from edge.detector import Detector

    source = Path(__file__).resolve().parent.parent / "models" / "samples" / "male_48k.flac"
    result = Detector().predict(_cut(source, 0.5, tmp_path / "half.flac"))
    assert result.warnings and result.warnings[0].startswith("truncated")
    assert Detector().predict(source).warnings == []


# ------------------------------------------------------------------ one sniffer, one resampler

@pytest.mark.parametrize("head,suffix", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", ".wav"), (b"fLaC\x00\x00\x00\x22", ".flac"), (b"OggS\x00\x02", ".ogg"),
    (b"FORM\x00\x00\x00\x00AIFF", ".aiff"), (b"caff\x00\x01", ".caf"), (b".snd\x00\x00\x00\x18", ".au"),
    (b"\x1aE\xdf\xa3\x9fB\x86\x81", ".webm"), (b"\x00\x00\x00\x20ftypM4A ", ".m4a"), (b"ID3\x04\x00", ".mp3"),
    (b"\xff\xfb\x90\x64", ".mp3"), (b"\xff\xf1\x50\x80", ".aac"), (b"#!AMR\n", ".amr"),
    (b"hello, world", None), (b"", None),
])
def test_one_container_sniffer_for_files_stdin_and_uploads(tmp_path, head, suffix):
    from edge.audio import sniff_suffix
    from edge.serve.app import sniff_suffix as upload_suffix

    assert sniff_suffix(head) == suffix
    path = tmp_path / "upload"
    path.write_bytes(head)
    assert upload_suffix(path) == suffix


def test_files_arrays_and_streams_resample_alike(tmp_path, rng):
    from edge.audio import ChunkResampler

    x = (0.2 * rng.standard_normal(44100 * 3)).astype(np.float32)
    whole = resample(x, 44100, SR)
    streamed = ChunkResampler(SR)
    parts = [streamed(x[i : i + 4410], 44100) for i in range(0, len(x), 4410)] + [streamed.finish()]
    np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-6)
    path = tmp_path / "noise.wav"
    sf.write(path, x, 44100, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path)[0], whole)
    np.testing.assert_array_equal(prepare_array(x, 44100), whole)


# ------------------------------------------------------------------ array shapes and messages

def test_channels_first_arrays_are_recognised():
    stereo = tone(1000, 8000, 1.0, channels=2)
    np.testing.assert_array_equal(prepare_array(stereo.T, 8000), prepare_array(stereo, 8000))
    assert prepare_array(stereo.T[:1], 8000).shape == prepare_array(stereo[:, 0], 8000).shape
    with pytest.raises(InvalidSamplesError, match="ambiguous"):
        prepare_array(np.zeros((400, 500), np.float32), SR)


def test_nan_message_names_the_file(tmp_path):
    y = tone(440, SR, 1.0)
    y[10] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    with pytest.raises(InvalidSamplesError, match=r"^nan\.wav: the audio contains NaN or infinite samples$"):
        load_audio(path)
    with pytest.raises(InvalidSamplesError, match=r"^the audio contains NaN or infinite samples$"):
        prepare_array(y, SR)  # an array has no name: said once, not "the audio: the audio ..."


def test_decoder_messages_do_not_leak_paths(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"RIFF" + bytes(200))
    with pytest.raises(CorruptAudioError) as caught:
        load_audio(path)
    assert str(tmp_path) not in str(caught.value) and str(caught.value).startswith("garbage.wav: damaged audio file")


def run_as_nobody(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run Python as an unprivileged user when we are root (root reads any file, whatever its mode)."""
    import os

    command = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def open_folder():
    """A folder others can enter (pytest's own are private to their owner)."""
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="gvd-test-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_file_is_a_specific_error(open_folder):
    import os

    folder = open_folder
    path = folder / "locked.wav"
    sf.write(path, tone(300, SR, 1.0), SR)
    os.chmod(path, 0)
    out = run_as_nobody(
        "import sys\nfrom edge.audio import load_audio\n"
        "try:\n    load_audio(sys.argv[1])\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n",
        str(path))
    expected = "UnreadableFileError locked.wav: permission denied (the file cannot be read)"
    assert out.stdout.strip() == expected, out.stderr


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_reused_resampler_streams_give_what_fresh_ones_give(rng, rate):
    """Resamplers take soxr streams from a pool (a fresh stream designs its filter again): a stream
    that was used, finished and cleared gives the same samples as a new one, and two resamplers
    running at once at the same rate never share a stream."""
    import soxr

    from edge.audio import ChunkResampler

    x = rng.standard_normal(3 * rate).astype(np.float32)
    fresh = soxr.ResampleStream(rate, 16000, 1, dtype="float32", quality="HQ")
    want = np.concatenate([fresh.resample_chunk(x[:rate]), fresh.resample_chunk(x[rate:]),
                           fresh.resample_chunk(np.zeros(0, np.float32), last=True)])
    for _ in range(2):  # the second round reuses the streams the first gave back
        a, b = ChunkResampler(16000), ChunkResampler(16000)
        a_parts, b_parts = [], []
        for lo in range(0, x.size, rate // 2):  # interleaved blocks
            a_parts.append(a(x[lo : lo + rate // 2], rate))
            b_parts.append(b(x[lo : lo + rate // 2], rate))
        a_parts.append(a.finish())
        b_parts.append(b.finish())
        np.testing.assert_array_equal(np.concatenate(a_parts), want)
        np.testing.assert_array_equal(np.concatenate(b_parts), want)


# -- which libsndfile decodes ----------------------------------------------------------------------

_DECODE_WITH = """
import sys, numpy as np
from edge.audio import libsndfile_version, load_audio
samples = [load_audio(p, 16000)[0] for p in sys.argv[2:]]
np.savez(sys.argv[1], version=libsndfile_version(), *samples)
"""


def _decode_in_a_process(tmp_path, choice: str | None, files: list[str]) -> tuple[int, str, list[np.ndarray]]:
    """(exit code, version or error, samples) from a fresh process with GVD_LIBSNDFILE=choice."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "GVD_LIBSNDFILE"}
    if choice is not None:
        env["GVD_LIBSNDFILE"] = choice
    out = tmp_path / f"decoded_{abs(hash(choice))}.npz"
    done = subprocess.run([sys.executable, "-c", _DECODE_WITH, str(out), *files], env=env, capture_output=True,
                          text=True, timeout=120)
    if done.returncode:
        return done.returncode, done.stderr.strip().splitlines()[-1], []
    data = np.load(out)
    return 0, str(data["version"]), [data[f"arr_{i}"] for i in range(len(files))]


def test_the_system_libsndfile_decodes_the_same_samples_as_the_wheels_copy(tmp_path):
    from edge.audio import _system_libsndfile

    if _system_libsndfile() is None:
        pytest.skip("no libsndfile installed by the system (Debian: libsndfile1): only the wheel's copy to test")
    files = [str(p) for p in sorted((Path(__file__).parents[1] / "models" / "samples").glob("*.flac"))]
    code, system, from_system = _decode_in_a_process(tmp_path, None, files)
    assert code == 0, system
    code, bundled, from_wheel = _decode_in_a_process(tmp_path, "bundled", files)
    assert code == 0, bundled
    named_code, named, _ = _decode_in_a_process(tmp_path, _system_libsndfile(), files[:1])
    assert named_code == 0 and named == system  # a path picks that library
    assert system.startswith("libsndfile-") and bundled.startswith("libsndfile-")
    for a, b in zip(from_system, from_wheel, strict=True):
        np.testing.assert_array_equal(a, b)  # FLAC is lossless: either library, the same samples


def test_a_libsndfile_that_does_not_load_is_a_clear_error_on_every_file(tmp_path):
    import os

    sample = str(Path(__file__).parents[1] / "models" / "samples" / "male_16k.flac")
    code, message, _ = _decode_in_a_process(tmp_path, str(tmp_path / "missing.so"), [sample])
    assert code != 0 and "GVD_LIBSNDFILE" in message and "not a libsndfile that loads" in message
    # Not only the first file: the second is refused too, never decoded by another library.
    script = ("import sys\nfrom edge.audio import load_audio\nfor _ in range(2):\n    try:\n"
              "        load_audio(sys.argv[1], 16000)\n    except Exception as exc:\n        print(exc)\n")
    env = {**os.environ, "GVD_LIBSNDFILE": str(tmp_path / "missing.so")}
    done = subprocess.run([sys.executable, "-c", script, sample], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.count("not a libsndfile that loads") == 2, done.stdout + done.stderr
