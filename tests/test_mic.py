"""Live capture with a fake sounddevice module: rate fallback, overflows, a device that disappears."""

from __future__ import annotations

import json
import sys
import threading
import time
import types

import numpy as np
import pytest
from click.testing import CliRunner

from edge import mic
from edge.commands import devices, listen
from edge.errors import MissingExtraError

from model_fixtures import REPO, voice


class FakePortAudioError(Exception):
    pass


class FakeFlags:
    def __init__(self, input_overflow: bool):
        self.input_overflow = input_overflow

    def __bool__(self) -> bool:
        return self.input_overflow


class FakeSoundDevice(types.ModuleType):
    """The parts of sounddevice gvd uses: a USB microphone that only does 48 kHz."""

    PortAudioError = FakePortAudioError

    def __init__(self, audio: np.ndarray, rates=(48000,), overflow_every: int = 0, vanish_after: float | None = None):
        super().__init__("sounddevice")
        self.audio, self.rates = audio, set(rates)
        self.overflow_every, self.vanish_after = overflow_every, vanish_after
        self.default = types.SimpleNamespace(device=[1, 0])
        self.devices = [
            {"name": "HDMI output", "max_input_channels": 0, "default_samplerate": 48000.0, "hostapi": 0},
            {"name": "USB Microphone", "max_input_channels": 1, "default_samplerate": 48000.0, "hostapi": 0},
        ]
        self.opened: list[dict] = []

    def query_devices(self, device=None, kind=None):
        if kind == "input":
            return self.devices[1 if device is None else int(device)]
        return self.devices

    def query_hostapis(self):
        return [{"name": "ALSA"}]

    def check_input_settings(self, device=None, channels=None, dtype=None, samplerate=None):
        if samplerate not in self.rates:
            raise FakePortAudioError(f"Invalid sample rate [PaErrorCode -9997] ({samplerate})")

    def InputStream(self, **kwargs):  # noqa: N802 - sounddevice's name
        self.opened.append(kwargs)
        return FakeStream(self, **kwargs)


class FakeStream:
    def __init__(self, sd, device, channels, samplerate, blocksize, dtype, callback, finished_callback):
        self.sd, self.rate, self.blocksize = sd, samplerate, blocksize
        self.callback, self.finished_callback = callback, finished_callback
        self.active = False
        self._stop = threading.Event()

    def start(self):
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        audio, n = self.sd.audio, 0
        for i, start in enumerate(range(0, len(audio), self.blocksize)):
            if self._stop.is_set():
                return
            if self.sd.vanish_after is not None and start >= self.sd.vanish_after * self.rate:
                self.active = False
                self.finished_callback()  # what PortAudio does when a USB device goes away
                return
            block = audio[start : start + self.blocksize].reshape(-1, 1)
            overflow = bool(self.sd.overflow_every) and i % self.sd.overflow_every == 0
            self.callback(block, len(block), None, FakeFlags(overflow))
            n += 1
            time.sleep(0.001)
        # The recording is over but the device stays plugged in: silence, like a quiet room.
        while not self._stop.wait(0.01):
            self.callback(np.zeros((self.blocksize, 1), np.float32), self.blocksize, None, FakeFlags(False))

    def stop(self):
        self._stop.set()
        self.active = False

    abort = stop  # sounddevice's abort: stop without waiting for queued blocks

    def close(self):
        pass


def speech_48k(seconds: float = 8.0) -> np.ndarray:
    return np.concatenate([np.zeros(48000, np.float32), voice(200, seconds - 1, 48000)])


def test_rate_fallback_to_the_device_default_and_overflow_count():
    sd = FakeSoundDevice(speech_48k(), overflow_every=5)
    microphone = mic.Microphone(samplerate=16000, sd=sd)
    assert microphone.samplerate == 48000  # 16 kHz refused, the device's own rate accepted
    received = 0
    with microphone:
        for chunk, rate in microphone.chunks():
            assert rate == 48000 and chunk.ndim == 1
            received += len(chunk)
            if received >= 2 * 48000:
                break
    assert sd.opened[0]["samplerate"] == 48000 and sd.opened[0]["channels"] == 1
    assert microphone.overflows >= 3


def test_no_acceptable_rate():
    sd = FakeSoundDevice(speech_48k(), rates=())
    with pytest.raises(mic.MicrophoneError, match="accepts none of the rates"):
        mic.Microphone(sd=sd)


def test_device_that_disappears_raises_device_lost():
    sd = FakeSoundDevice(speech_48k(), vanish_after=1.0)
    microphone = mic.Microphone(sd=sd, stall_seconds=0.5)
    with pytest.raises(mic.DeviceLostError, match="unplugged"):
        with microphone:
            for _ in microphone.chunks():
                pass


def test_device_that_goes_silent_without_notice_raises_device_lost(monkeypatch):
    sd = FakeSoundDevice(speech_48k(), vanish_after=1.0)
    microphone = mic.Microphone(sd=sd, stall_seconds=0.3)
    monkeypatch.setattr(microphone, "_finished", lambda: None)  # no finished callback either
    with pytest.raises(mic.DeviceLostError, match="no audio .* for 0.3 s"):
        with microphone:
            for _ in microphone.chunks():
                pass


def test_listen_json_from_a_fake_48k_microphone(fake_model, monkeypatch):
    sd = FakeSoundDevice(speech_48k(8.0), overflow_every=10)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    result = CliRunner().invoke(listen, ["--json", "--model", str(fake_model), "--duration", "6"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0] == {"event": "start", "model": "fake_gru", "hop_seconds": 0.5,
                         "source": "USB Microphone", "sample_rate": 48000}
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "duration reached"
    assert events[-1]["overflows"] >= 5  # counted and reported, not fatal
    decisions = [e for e in events if e["event"] == "decision"]
    assert decisions[0]["label"] == "no_speech" and decisions[-1]["label"] in ("female", "male")


def test_listen_ends_with_a_clear_error_when_the_device_is_unplugged(fake_model, monkeypatch):
    sd = FakeSoundDevice(speech_48k(8.0), vanish_after=3.0)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    result = CliRunner().invoke(listen, ["--json", "--model", str(fake_model)])
    assert result.exit_code != 0
    assert "stopped (unplugged?)" in result.stderr
    end = json.loads(result.stdout.splitlines()[-1])
    assert end["event"] == "end" and end["reason"] == "device lost" and end["seconds"] == pytest.approx(3.0, abs=0.2)


def test_listen_ctrl_c_exits_cleanly(fake_model, monkeypatch):
    sd = FakeSoundDevice(speech_48k(8.0))
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    calls = {"n": 0}
    original = mic.Microphone.chunks

    def interrupted(self):
        for item in original(self):
            calls["n"] += 1
            if calls["n"] == 20:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(mic.Microphone, "chunks", interrupted)
    result = CliRunner().invoke(listen, ["--model", str(fake_model)])
    assert result.exit_code == 0
    assert "interrupted" in result.output


def test_input_file_works_without_sounddevice(fake_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    sample = REPO / "models" / "samples" / "two_speakers.wav"
    result = CliRunner().invoke(listen, ["--json", "--fast", "--input", str(sample), "--model", str(fake_model)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["event"] == "end" and events[-1]["seconds"] == pytest.approx(14.13, abs=0.1)
    assert {e["label"] for e in events if e["event"] in ("decision", "update")} >= {"no_speech"}


def test_missing_sounddevice_names_the_extra(fake_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MissingExtraError, match=r"gvd\[mic\]"):
        mic.import_sounddevice()
    result = CliRunner().invoke(listen, ["--model", str(fake_model)])
    assert result.exit_code == 1 and "gvd[mic]" in result.stderr


def test_missing_portaudio_gives_the_apt_command(monkeypatch):
    def no_portaudio(name):
        raise OSError("PortAudio library not found")

    monkeypatch.setattr(mic.importlib, "import_module", no_portaudio)
    result = CliRunner().invoke(devices, [])
    assert result.exit_code == 1 and "apt install libportaudio2" in result.stderr


def test_devices_lists_inputs_only(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSoundDevice(speech_48k()))
    result = CliRunner().invoke(devices, [])
    assert result.exit_code == 0
    assert "USB Microphone" in result.stdout and "HDMI" not in result.stdout
    assert result.stdout.startswith("*   1  USB Microphone")
    listed = json.loads(CliRunner().invoke(devices, ["--json"]).stdout)
    assert listed["index"] == 1 and listed["default_samplerate"] == 48000.0 and listed["default"] is True


def test_listen_too_short_input_is_no_speech_too_short(fake_model, tmp_path):
    import soundfile as sf

    path = tmp_path / "tap.wav"
    sf.write(path, voice(210, 0.1), 16000)
    result = CliRunner().invoke(listen, ["--json", "--fast", "--input", str(path), "--model", str(fake_model)])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    decision = next(e for e in events if e["event"] == "decision")
    assert (decision["label"], decision["reason"]) == ("no_speech", "too_short")
    assert events[-1]["event"] == "end" and events[-1]["label"] == "no_speech"
    text = CliRunner().invoke(listen, ["--fast", "--input", str(path), "--model", str(fake_model)])
    assert text.exit_code == 0 and "no speech (too short)" in text.stdout


def test_listen_input_says_the_file_is_truncated(fake_model, tmp_path):
    data = (REPO / "models" / "samples" / "two_speakers.wav").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: len(data) // 2])
    result = CliRunner().invoke(listen, ["--json", "--fast", "--input", str(cut), "--model", str(fake_model)])
    assert result.exit_code == 0, result.output
    end = json.loads(result.stdout.splitlines()[-1])
    assert end["warnings"] == ["truncated: the header promises 14.13 s, the file holds 7.06 s"]


def test_listen_input_errors_read_like_predict(fake_model, tmp_path):
    import soundfile as sf

    missing = CliRunner().invoke(listen, ["--fast", "--input", str(tmp_path / "gone.wav"), "--model", str(fake_model)])
    assert missing.exit_code == 1 and f"{tmp_path / 'gone.wav'}: no such file" in missing.stderr
    folder = CliRunner().invoke(listen, ["--fast", "--input", str(tmp_path), "--model", str(fake_model)])
    assert folder.exit_code == 1 and "is a folder, not an audio file" in folder.stderr
    y = voice(210, 3.0)
    y[100] = np.nan
    sf.write(tmp_path / "nan.wav", y, 16000, subtype="FLOAT")
    nan = CliRunner().invoke(listen, ["--fast", "--input", str(tmp_path / "nan.wav"), "--model", str(fake_model)])
    assert nan.exit_code == 1 and "nan.wav: the audio contains NaN or infinite samples" in nan.stderr
