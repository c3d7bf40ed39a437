"""FLAC decoders side by side: time per file and whether their float32 samples equal libsndfile's.

    python benchmarks/bench_decode.py                          # the bundled clips
    python benchmarks/bench_decode.py --shared ../shared --files 300   # + a sample of the shared corpora

Candidates: soundfile (libsndfile) read as float32 (what ``edge.audio`` does for FLAC), as int16 or
int32 and scaled by one multiply, PyAV (the ``[formats]`` extra) and, when importable, miniaudio's
dr_flac (``pip install 'miniaudio>=1.70'``; not a dependency, for the reasons in the README's speed
section). Every figure includes opening the file; the candidates are run in turn on each file,
alternating the order, and a figure is the median over ``--rounds`` (a busy machine slows all of them
alike). FLAC is lossless, so a decoder may only replace libsndfile if every array is bit-identical
("equal" counts them). Prints a Markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from edge.audio import _to_float32  # the runtime's own integer-to-float scaling

SAMPLES = Path(__file__).resolve().parent.parent / "models" / "samples"


def _sf(dtype: str) -> Callable[[str], np.ndarray]:
    def read(path: str) -> np.ndarray:
        with sf.SoundFile(path) as handle:
            out = np.empty((handle.frames, handle.channels), dtype)
            out = out[: len(handle.read(out=out))]
        return _to_float32(out)
    return read


def _pyav(path: str) -> np.ndarray:
    import av

    with av.open(path) as container:
        channels = container.streams.audio[0].codec_context.channels
        frames = list(container.decode(audio=0))
    planar = frames[0].format.is_planar
    data = np.concatenate([frame.to_ndarray() for frame in frames], axis=1)
    data = data.T if planar else data.reshape(-1, channels)  # (channels, n) planar, (1, n*channels) packed
    return _to_float32(data)


def _drflac(kind: str) -> Callable[[str], np.ndarray] | None:
    try:
        from miniaudio import ffi, lib
    except ImportError:
        return None

    def read(path: str) -> np.ndarray:
        flac = lib.ma_dr_flac_open_file(path.encode(), ffi.NULL)
        if flac == ffi.NULL:
            raise RuntimeError(f"{path}: dr_flac cannot open it")
        try:  # straight into a NumPy buffer, no array.array copy
            out = np.empty((flac.totalPCMFrameCount, flac.channels), np.int16 if kind == "s16" else np.float32)
            if kind == "s16":
                count = lib.ma_dr_flac_read_pcm_frames_s16(flac, len(out), ffi.cast("ma_dr_flac_int16 *",
                                                                                   ffi.from_buffer(out)))
            else:
                count = lib.ma_dr_flac_read_pcm_frames_f32(flac, len(out), ffi.cast("float *", ffi.from_buffer(out)))
        finally:
            lib.ma_dr_flac_close(flac)
        return _to_float32(out[:count])
    return read


def candidates() -> dict[str, Callable[[str], np.ndarray]]:
    found = {"soundfile float32": _sf("float32"), "soundfile int16": _sf("int16"), "soundfile int32": _sf("int32")}
    try:
        import av  # noqa: F401

        found["PyAV"] = _pyav
    except ImportError:
        pass
    for kind in ("f32", "s16"):
        reader = _drflac(kind)
        if reader is not None:
            found[f"dr_flac {kind}"] = reader
    return found


def measure(files: list[str], rounds: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Median seconds per file and candidate, and how many files each decoded bit-identically."""
    readers = candidates()
    names = list(readers)
    medians: dict[str, list[float]] = {name: [] for name in names}
    equal = dict.fromkeys(names, 0)
    for path in files:
        reference = readers["soundfile float32"](path)
        for name in names:
            try:
                got = readers[name](path)
            except Exception:  # noqa: BLE001 - a decoder that fails counts as unequal
                continue
            equal[name] += got.shape == reference.shape and got.tobytes() == reference.tobytes()
        times: dict[str, list[float]] = {name: [] for name in names}
        for turn in range(rounds):
            for name in names if turn % 2 else names[::-1]:
                start = time.perf_counter()
                readers[name](path)
                times[name].append(time.perf_counter() - start)
        for name in names:
            medians[name].append(statistics.median(times[name]))
    return medians, equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, help="the shared folder (data/<corpus>/...)")
    parser.add_argument("--files", type=int, default=300, help="shared FLAC files sampled [300]")
    parser.add_argument("--rounds", type=int, default=21, help="timed runs per file and candidate [21]")
    args = parser.parse_args()
    bundled = sorted(str(p) for p in SAMPLES.glob("*.flac"))
    medians, equal = measure(bundled, args.rounds)
    names = list(medians)
    print("| clip | " + " | ".join(f"{name} ms" for name in names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for i, path in enumerate(bundled):
        print(f"| {Path(path).name} | " + " | ".join(f"{medians[n][i] * 1e3:.2f}" for n in names) + " |")
    print("| equal (bundled) | " + " | ".join(f"{equal[n]}/{len(bundled)}" for n in names) + " |")
    if args.shared:
        pool = sorted(str(p) for p in (args.shared / "data").rglob("*.flac"))
        shared = random.Random(0).sample(pool, min(args.files, len(pool)))
        medians, equal = measure(shared, max(3, args.rounds // 4))
        samples = sum(sf.info(p).frames * sf.info(p).channels for p in shared)
        print(f"| {len(shared)} shared files, ns per sample | "
              + " | ".join(f"{sum(medians[n]) / samples * 1e9:.1f}" for n in names) + " |")
        print("| equal (shared) | " + " | ".join(f"{equal[n]}/{len(shared)}" for n in names) + " |")


if __name__ == "__main__":
    main()
