"""The microphone path through a real audio stack: PulseAudio -> ALSA's pulse plugin -> PortAudio ->
sounddevice -> ``gvd listen``.

Each test starts its own PulseAudio server (no daemon, no D-Bus, a private socket) with a virtual
microphone: ``module-pipe-source`` reads 48 kHz PCM from a FIFO that the test fills at real-time pace
with the bundled two-speaker clip. It is the server's only source: PulseAudio moves a recording whose
source disappears to any other source (the monitor of a sink, a built-in microphone), and gvd then
hears that one, so an unplug can only be seen when nothing is left to fall back on. An ``.asoundrc``
in the server's home names that source as an ALSA device, so PortAudio lists it like any sound card.
Needs Debian's ``pulseaudio``, ``libportaudio2`` and ``libasound2-plugins`` (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from model_fixtures import REPO, make_pitch_model, shipped_models

RATE = 48000
DEVICE = "gvd_virtual_mic"
CLIP = REPO / "models" / "samples" / "two_speakers.wav"
PULSE_PLUGIN = Path("/usr/lib") / f"{os.uname().machine}-linux-gnu" / "alsa-lib" / "libasound_module_pcm_pulse.so"
INSTALL = "apt-get install pulseaudio pulseaudio-utils libportaudio2 libasound2-plugins"


def _missing() -> str | None:
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        return f"no PulseAudio server here ({INSTALL}; .ci/run installs it)"
    if not PULSE_PLUGIN.exists():
        return f"no ALSA pulse plugin at {PULSE_PLUGIN} ({INSTALL})"
    try:
        import sounddevice  # noqa: F401 - PortAudio must load
    except (ImportError, OSError) as exc:
        return f"sounddevice/PortAudio cannot load ({exc}; {INSTALL} and the [mic] extra)"
    return None


pytestmark = [pytest.mark.skipif(_missing() is not None, reason=_missing() or ""), shipped_models]


class PulseServer:
    """A private PulseAudio server with a FIFO-fed virtual microphone."""

    def __init__(self, home: Path):
        self.home = home
        self.fifo = home / "mic.fifo"
        self.socket = home / "native"
        self.env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home),
                    "PULSE_SERVER": f"unix:{self.socket}", "PYTHONPATH": str(REPO)}
        # ALSA reads ~/.asoundrc: a named PCM on our source, with a hint so that PortAudio lists it.
        (home / ".asoundrc").write_text(
            f'pcm.{DEVICE} {{\n  type pulse\n  device gvd_pipe\n'
            f'  hint {{ show on; description "gvd virtual microphone" }}\n}}\n'
            f'ctl.{DEVICE} {{ type pulse }}\n')
        self.log = open(home / "pulseaudio.log", "w")
        self.process = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
             "--log-target=stderr", "-L", f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
             "-L", f"module-pipe-source source_name=gvd_pipe file={self.fifo} format=s16le rate={RATE} channels=1"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=home)
        deadline = time.monotonic() + 15
        while self.pactl("info").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"PulseAudio did not start: {(home / 'pulseaudio.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self._feeding = threading.Event()
        self._feeder: threading.Thread | None = None

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)

    def feed(self, pcm: bytes, loop: bool = False) -> None:
        """Write 16-bit PCM into the virtual microphone at real-time pace, in a thread."""

        def run() -> None:
            fd = os.open(self.fifo, os.O_WRONLY)
            step = RATE // 10 * 2  # 100 ms
            started, sent = time.monotonic(), 0
            try:
                while self._feeding.is_set():
                    for i in range(0, len(pcm), step):
                        if not self._feeding.is_set():
                            return
                        os.write(fd, pcm[i : i + step])
                        sent += len(pcm[i : i + step])
                        delay = started + sent / (2 * RATE) - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    if not loop:
                        return
            except OSError:  # the source was unloaded: nobody reads the FIFO any more
                return
            finally:
                os.close(fd)

        self._feeding.set()
        self._feeder = threading.Thread(target=run, daemon=True)
        self._feeder.start()

    def stop(self) -> None:
        self._feeding.clear()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture
def pulse(tmp_path):
    server = PulseServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def clip_pcm() -> bytes:
    from edge.audio import load_audio, resample

    y, _ = load_audio(CLIP)
    return (np.clip(resample(y, 16000, RATE), -1, 1) * 32767).astype("<i2").tobytes()


def gvd(server: PulseServer, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *args], env=server.env, capture_output=True,
                          text=True, timeout=timeout, cwd=server.home)


def start_listening(server: PulseServer, *args: str) -> tuple[subprocess.Popen, dict]:
    """``gvd listen --json`` on the virtual microphone, once it has said that it started."""
    listen = subprocess.Popen([sys.executable, "-m", "edge", "listen", "--device", DEVICE, "--samplerate", str(RATE),
                               "--json", *args], env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=server.home)
    first = listen.stdout.readline()
    if not first:
        listen.wait(timeout=10)
        pytest.fail(f"gvd listen did not start: {listen.stderr.read()}")
    return listen, json.loads(first)


def finish(listen: subprocess.Popen, timeout: float) -> tuple[list[dict], str]:
    try:
        out, err = listen.communicate(timeout=timeout)
    finally:
        if listen.poll() is None:
            listen.kill()
    return [json.loads(line) for line in out.splitlines()], err


def test_devices_lists_the_virtual_microphone(pulse):
    result = gvd(pulse, "devices", "--json")
    assert result.returncode == 0, result.stderr
    names = {json.loads(line)["name"] for line in result.stdout.splitlines()}
    assert DEVICE in names, names


@pytest.fixture(scope="module")
def pitch_model(tmp_path_factory) -> Path:
    """The audio stack is under test, not a trained model: this one decides from pitch alone, so the
    bundled machine voices (which a trained model may misjudge) have a known answer."""
    return make_pitch_model(tmp_path_factory.mktemp("model") / "pitch.onnx")


def test_listen_captures_at_48k_and_follows_the_speaker_change(pulse, clip_pcm, pitch_model):
    listen, start = start_listening(pulse, "--model", str(pitch_model), "--duration", "13")
    assert start == {**start, "event": "start", "source": DEVICE, "sample_rate": RATE}
    pulse.feed(clip_pcm)  # the source drops what nobody records: feed once capture runs
    events, err = finish(listen, timeout=60)
    assert listen.returncode == 0, err
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "duration reached", events[-1]
    decisions = [(e["time"], e["label"]) for e in events if e["event"] == "decision"]
    # The woman speaks from 0.0 s to 6.6 s, the man from 8.0 s (models/samples/README.md); capture
    # starts a little before the feed, so times run up to about a second late.
    female = [t for t, label in decisions if label == "female"]
    male = [t for t, label in decisions if label == "male"]
    assert female and female[0] < 5.0, decisions
    assert male and male[-1] > 8.0 and male[-1] > female[-1], decisions
    assert decisions[-1][1] == "male", decisions


def test_unplugged_source_ends_listen_with_an_error(pulse, clip_pcm):
    listen, _ = start_listening(pulse)
    pulse.feed(clip_pcm, loop=True)
    time.sleep(4)
    unplug = pulse.pactl("unload-module", "module-pipe-source")
    assert unplug.returncode == 0, unplug.stderr
    unplugged = time.monotonic()
    events, err = finish(listen, timeout=30)
    assert listen.returncode == 1, (events[-3:], err)
    assert time.monotonic() - unplugged < 10  # said within seconds, not left hanging
    end = events[-1]
    assert end["event"] == "end" and end["reason"] == "device lost", end
    assert end["seconds"] > 2.0
    assert DEVICE in err and ("unplugged" in err or "stopped" in err), err


def test_source_that_stops_delivering_ends_listen_instead_of_hanging(pulse):
    """The microphone stays listed but no audio comes (its writer died, a USB hub stalled): PortAudio's
    stop() would wait for the capture thread forever; gvd must give up, say so, and exit."""
    listen, _ = start_listening(pulse)
    pulse.feed(bytes(2 * RATE * 3))  # 3 s of silence, then nothing
    stalled = time.monotonic()
    events, err = finish(listen, timeout=30)
    assert listen.returncode == 1, (events[-3:], err)
    assert time.monotonic() - stalled < 15
    assert events[-1]["event"] == "end" and events[-1]["reason"] == "device lost", events[-1]
    assert f"no audio from '{DEVICE}'" in err and "unplugged" in err, err
