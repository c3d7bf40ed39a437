"""Microphone capture with sounddevice (the ``[mic]`` extra), and listing input devices.

The PortAudio callback only copies the block into a queue; inference happens in the consuming
thread, so a slow window never makes the audio driver wait. Input overflows are counted, not fatal.
A device that stops delivering audio (unplugged) ends the capture with :class:`DeviceLostError`.
The ``sd`` parameter accepts any object with sounddevice's interface, which is how tests run
without a microphone.
"""

from __future__ import annotations

import importlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import GvdError, MissingExtraError

# Rates to try after the requested one and the device's own default; many USB microphones refuse 16 kHz.
FALLBACK_RATES = (48000, 44100, 32000, 22050, 16000)
_END = object()


class MicrophoneError(GvdError):
    """The microphone cannot be used (no PortAudio, no device, unsupported settings)."""


class DeviceLostError(MicrophoneError):
    """The input device stopped delivering audio, usually because it was unplugged."""


def import_sounddevice() -> Any:
    """sounddevice, or an error that says exactly what to install."""
    try:
        return importlib.import_module("sounddevice")
    except OSError as exc:  # the package is there, the PortAudio C library is not
        raise MicrophoneError(
            f"the PortAudio library is missing ({exc}); install it with: sudo apt install libportaudio2"
        ) from exc
    except ImportError as exc:
        raise MissingExtraError("mic", "sounddevice", "live microphone input") from exc


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_samplerate: float
    hostapi: str
    default: bool


def input_devices(sd: Any = None) -> list[InputDevice]:
    """Every device with at least one input channel, like ``python -m sounddevice``."""
    sd = sd or import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as exc:
        raise MicrophoneError(f"cannot list audio devices: {exc}") from exc
    default_input = _default_input_index(sd)
    found = []
    for index, device in enumerate(devices):
        if int(device["max_input_channels"]) < 1:
            continue
        hostapi = hostapis[device["hostapi"]]["name"] if hostapis else ""
        found.append(InputDevice(index, device["name"], int(device["max_input_channels"]),
                                 float(device["default_samplerate"]), hostapi, index == default_input))
    return found


def _default_input_index(sd: Any) -> int | None:
    device = sd.default.device
    index = device[0] if isinstance(device, (list, tuple)) else device
    try:
        return int(index) if index is not None and int(index) >= 0 else None
    except (TypeError, ValueError):
        return None


def choose_samplerate(sd: Any, device: int | str | None, wanted: int | None = None) -> int:
    """The first rate the device accepts: the requested one, its default, then common rates."""
    try:
        info = sd.query_devices(device, kind="input")
    except (sd.PortAudioError, ValueError) as exc:
        which = (f"input device {device!r}" if device is not None
                 else "default input device (is a microphone connected?)")
        raise MicrophoneError(f"no usable {which}: {exc}; list the devices with 'gvd devices'") from exc
    candidates = [wanted] if wanted else []
    candidates += [int(info["default_samplerate"]), *FALLBACK_RATES]
    refused = []
    for rate in dict.fromkeys(candidates):
        try:
            sd.check_input_settings(device=device, channels=1, dtype="float32", samplerate=rate)
            return int(rate)
        except (sd.PortAudioError, ValueError) as exc:
            refused.append(f"{rate} Hz ({exc})")
    raise MicrophoneError(f"input device {info['name']!r} accepts none of the rates tried: {'; '.join(refused)}")


def _abort_and_close(stream: Any) -> None:
    try:
        stream.abort()
        stream.close()
    except Exception:  # noqa: BLE001 - a vanished device may fail to close; nothing to do
        pass


class Microphone:
    """Mono float32 blocks from an input device, as an iterator of (chunk, sample_rate)."""

    def __init__(self, device: int | str | None = None, samplerate: int | None = None,
                 block_seconds: float = 0.1, stall_seconds: float = 2.0, max_queued_seconds: float = 10.0,
                 sd: Any = None):
        self.sd = sd or import_sounddevice()
        self.device = device
        self.samplerate = choose_samplerate(self.sd, device, samplerate)
        self.blocksize = max(1, int(self.samplerate * block_seconds))
        self.stall_seconds = stall_seconds
        self.overflows = 0  # blocks PortAudio reported as overflowed (samples were lost)
        self.dropped = 0  # blocks dropped because inference fell behind
        self.name = str(self.sd.query_devices(device, kind="input")["name"])
        self._queue: queue.Queue = queue.Queue(maxsize=max(2, int(max_queued_seconds / block_seconds)))
        self._closing = threading.Event()
        self._stream: Any = None
        self.close_timeout = 2.0  # seconds to wait for the driver when closing

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs in PortAudio's thread: copy and queue, nothing else.
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        try:
            self._queue.put_nowait(indata[:, 0].copy() if indata.ndim == 2 else indata.copy())
        except queue.Full:
            self.dropped += 1

    def _finished(self) -> None:
        self._queue.put(_END)

    def open(self) -> Microphone:
        try:
            self._stream = self.sd.InputStream(device=self.device, channels=1, samplerate=self.samplerate,
                                               blocksize=self.blocksize, dtype="float32",
                                               callback=self._callback, finished_callback=self._finished)
            self._stream.start()
        except self.sd.PortAudioError as exc:
            raise MicrophoneError(f"cannot open input device {self.name!r} at {self.samplerate} Hz: {exc}") from exc
        return self

    def chunks(self) -> Iterator[tuple[np.ndarray, int]]:
        """Blocks as they arrive; raises DeviceLostError when the device stops delivering."""
        if self._stream is None:
            self.open()
        while True:
            try:
                item = self._queue.get(timeout=self.stall_seconds)
            except queue.Empty:
                if self._closing.is_set():
                    return
                raise DeviceLostError(
                    f"no audio from {self.name!r} for {self.stall_seconds:g} s: was the device unplugged?"
                ) from None
            if item is _END:
                if self._closing.is_set():
                    return
                raise DeviceLostError(f"the input device {self.name!r} stopped (unplugged?)")
            yield item, self.samplerate

    def close(self) -> None:
        self._closing.set()
        stream, self._stream = self._stream, None
        if stream is None:
            return
        # abort, not stop: stop waits for PortAudio's capture thread, which a source that vanished
        # (PulseAudio through ALSA) leaves blocked forever. A driver that still hangs is left behind
        # in a daemon thread: gvd must exit and say what happened.
        closer = threading.Thread(target=_abort_and_close, args=(stream,), daemon=True)
        closer.start()
        closer.join(self.close_timeout)

    def __enter__(self) -> Microphone:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
