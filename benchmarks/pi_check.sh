#!/usr/bin/env bash
# Proof that gvd runs on a Raspberry Pi (64-bit Raspberry Pi OS = Debian bookworm arm64, Python 3.11):
# build a bookworm arm64 root with debootstrap, run it under QEMU user-mode emulation, install the
# base runtime there from PyPI's aarch64 wheels plus a wheel of this repo, run `gvd predict --json`
# on the sample clips and compare with the same run on this (x86) machine.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: sudo bash benchmarks/pi_check.sh [options]

Checks that gvd installs and gives the same answers on 64-bit Raspberry Pi OS (Debian bookworm,
arm64, Python 3.11), emulated with QEMU on this machine. Every label must match the native run and
every probability must agree within the tolerance. Prints PASS or FAIL; exits 0 on PASS, 1 on FAIL,
2 when the check cannot run here (not root, no network, no aarch64 emulation).

The arm64 root is built once (about 5-10 minutes, needs deb.debian.org and pypi.org) and cached;
later runs only reinstall gvd and take about a minute. Nothing needs to be installed beforehand:
both sides install the same wheel of this checkout, the native side into a throwaway venv.

Options:
  --root DIR         cached arm64 root (default: $GVD_PI_ROOT, else /var/cache/gvd-pi-root)
  --rebuild          delete the cached root and build it again
  --clips DIR        folder of .wav/.flac clips to compare (default: models/samples, else clips
                     synthesised with flite into a temporary folder)
  --models LIST      comma-separated shipped model names or .onnx paths (default: every
                     model in models/manifest.json)
  --host-python PY   Python with gvd installed used for the native run (default: a throwaway
                     venv in a temporary folder with this checkout's wheel, deleted on exit)
  --native-only      only the native side: install this checkout into a throwaway venv and
                     predict the clips (no root, no emulation; a quick check of a fresh clone)
  --tolerance X      largest allowed probability difference (default: 1e-4; int8 models: 1e-3)
  --mirror URL       Debian mirror (default: http://deb.debian.org/debian)
  -h, --help         show this help

Timings measured under emulation are meaningless (QEMU is many times slower than a real Pi) and
are not reported; measure latency on the Pi itself with `gvd bench`.
USAGE
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${GVD_PI_ROOT:-/var/cache/gvd-pi-root}"
REBUILD=0
CLIPS=""
MODELS=""
HOST_PY=""
NATIVE_ONLY=0
TOL="1e-4"
INT8_TOL="1e-3"
MIRROR="http://deb.debian.org/debian"
SUITE="bookworm"
VENV="/opt/gvd-venv"            # inside the root
BASE_DEPS="numpy onnxruntime soundfile soxr click"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --rebuild) REBUILD=1; shift ;;
    --clips) CLIPS="$2"; shift 2 ;;
    --models) MODELS="$2"; shift 2 ;;
    --host-python) HOST_PY="$2"; shift 2 ;;
    --native-only) NATIVE_ONLY=1; shift ;;
    --tolerance) TOL="$2"; shift 2 ;;
    --mirror) MIRROR="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "pi_check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '[pi-check %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
cannot_run() { echo "pi_check: CANNOT RUN: $*" >&2; exit 2; }

START=$(date +%s)

# --- the native side: this checkout's wheel, installed into a throwaway venv -------------------------
# (a fresh clone has nothing installed: running `python3 -m edge` there fails with "No module named edge")
prepare_native() {  # sets WHEEL and HOST_PY; needs $WORK
  local build_py="${HOST_PY:-}"
  if [[ -z "$HOST_PY" ]]; then
    command -v python3 >/dev/null || cannot_run "python3 is not installed (apt-get install python3 python3-venv)"
    say "creating a throwaway venv for the native run ($WORK/host-venv)"
    python3 -m venv "$WORK/host-venv" > "$WORK/venv.log" 2>&1 \
      || { tail -n 5 "$WORK/venv.log" >&2; cannot_run "python3 -m venv failed (apt-get install python3-venv)"; }
    build_py="$WORK/host-venv/bin/python"
  fi
  say "building a wheel of $REPO"
  mkdir -p "$WORK/wheel"
  "$build_py" -m pip wheel -q --no-deps --disable-pip-version-check -w "$WORK/wheel" "$REPO" > "$WORK/wheel.log" 2>&1 \
    || { tail -n 20 "$WORK/wheel.log" >&2; cannot_run "could not build a wheel of the repository"; }
  WHEEL="$(ls "$WORK/wheel"/*.whl | head -n 1)"
  if [[ -z "$HOST_PY" ]]; then
    say "installing $(basename "$WHEEL") and the base runtime into the throwaway venv"
    "$build_py" -m pip install -q --disable-pip-version-check --only-binary=:all: "$WHEEL" > "$WORK/host-pip.log" 2>&1 \
      || { tail -n 20 "$WORK/host-pip.log" >&2; cannot_run "pip could not install gvd natively (network to pypi.org?)"; }
    HOST_PY="$build_py"
  fi
  "$HOST_PY" -c "import edge" 2>/dev/null || cannot_run "$HOST_PY cannot import gvd (edge); pass --host-python"
}
audio_in() { find "$1" -maxdepth 1 -type f \( -iname '*.wav' -o -iname '*.flac' \) | sort; }

if [[ $NATIVE_ONLY -eq 1 ]]; then
  WORK="$(mktemp -d /tmp/gvd-pi-check.XXXXXX)"
  trap 'rm -rf "$WORK"' EXIT
  prepare_native
  CLIPS="${CLIPS:-$REPO/models/samples}"
  mapfile -t clip_files < <(audio_in "$CLIPS")
  [[ ${#clip_files[@]} -gt 0 ]] || cannot_run "no .wav or .flac clips in $CLIPS"
  (cd "$WORK" && "$HOST_PY" -m edge predict --json "${clip_files[@]}") > "$WORK/native.json" \
    || { echo "FAIL: gvd predict failed natively from the throwaway venv"; exit 1; }
  labelled=$(grep -c '"label"' "$WORK/native.json" || true)
  [[ "$labelled" -eq ${#clip_files[@]} ]] || { echo "FAIL: $labelled of ${#clip_files[@]} clips classified"; exit 1; }
  echo "PASS (native only): a fresh install of this checkout classified ${#clip_files[@]} clips ($(( $(date +%s) - START )) s)"
  exit 0
fi
ROOT="$(realpath -m "$ROOT")"
case "$ROOT/" in
  "$REPO"/*) cannot_run "the arm64 root must not live inside the repository ($ROOT)";;
esac
[[ $(id -u) -eq 0 ]] || cannot_run "must run as root (debootstrap, chroot and mounts need it)"
[[ "$(uname -m)" == "aarch64" ]] && say "note: this machine is already aarch64; QEMU is not needed"

# --- tools ---------------------------------------------------------------------------------------
need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v python3 >/dev/null || need_pkgs+=(python3)
[[ -n "$HOST_PY" ]] || python3 -c 'import ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
[[ -e /usr/bin/qemu-aarch64-static || "$(uname -m)" == "aarch64" ]] || need_pkgs+=(qemu-user-static)
command -v update-binfmts >/dev/null || need_pkgs+=(binfmt-support)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then
  command -v apt-get >/dev/null || cannot_run "install ${need_pkgs[*]} first"
  say "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null; } \
    || cannot_run "could not install ${need_pkgs[*]}"
fi

# --- aarch64 emulation through binfmt_misc (the 'F' flag makes it work inside the chroot) --------
if [[ "$(uname -m)" != "aarch64" ]]; then
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
  fi
  if ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || cannot_run \
    "aarch64 binaries cannot be registered with binfmt_misc here (a container without privileges?); \
run this on a VM or a machine with qemu-user-static + binfmt-support"
  grep -qs '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || say \
    "warning: the aarch64 binfmt entry lacks the F flag; the chroot may not find QEMU"
fi

# --- mounts, cleaned up on every exit -------------------------------------------------------------
MOUNTED=()
WORK="$(mktemp -d /tmp/gvd-pi-check.XXXXXX)"
cleanup() {
  local i
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do
    umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# /sys stays unmounted on purpose: onnxruntime's cpuinfo library reads the host's CPU topology there
# and crashes (SIGSEGV) under QEMU; without it, it warns and falls back to generic kernels.
mount_into() {  # mount_into <root>
  local r="$1" d
  for d in proc dev; do
    mkdir -p "$r/$d"
    if ! mountpoint -q "$r/$d"; then
      case "$d" in
        proc) mount -t proc proc "$r/proc" ;;
        dev) mount --rbind /dev "$r/dev"; mount --make-rslave "$r/dev" ;;
      esac
      MOUNTED+=("$r/$d")
    fi
  done
}
unmount_all() {
  local i
  for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do
    umount -R "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
  done
  MOUNTED=()
}

# Network access from inside the root: the host's resolver and CA bundle (which may hold a proxy's CA).
share_network() {
  local r="$1"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  if [[ -s /etc/ssl/certs/ca-certificates.crt ]]; then
    cp -L /etc/ssl/certs/ca-certificates.crt "$r/etc/gvd-host-ca.crt"
  fi
}
in_root() {  # in_root <command...>: run a shell command inside the arm64 root
  chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CERT=/etc/gvd-host-ca.crt PIP_NO_INPUT=1 \
    /bin/bash -c "$*"
}

# --- build (or reuse) the arm64 root ---------------------------------------------------------------
if [[ $REBUILD -eq 1 && -d "$ROOT" ]]; then
  say "removing the cached root $ROOT"
  for d in proc sys dev; do umount -R "$ROOT/$d" 2>/dev/null || true; done
  rm -rf --one-file-system "$ROOT"
fi

if [[ ! -f "$ROOT/.gvd-root-ready" ]]; then
  BUILD="$ROOT.partial"
  for d in proc sys dev; do umount -R "$BUILD/$d" 2>/dev/null || true; done
  rm -rf --one-file-system "$BUILD"
  mkdir -p "$(dirname "$ROOT")"
  say "building Debian $SUITE arm64 in $BUILD (first run only; several minutes under emulation)"
  T0=$(date +%s)
  debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$BUILD" "$MIRROR" > "$WORK/debootstrap.log" 2>&1 || {
      tail -n 30 "$WORK/debootstrap.log" >&2
      [[ -f "$BUILD/debootstrap/debootstrap.log" ]] && tail -n 30 "$BUILD/debootstrap/debootstrap.log" >&2
      cannot_run "debootstrap failed (network? mirror $MIRROR)"; }
  say "debootstrap done in $(( $(date +%s) - T0 )) s"
  ROOT_FINAL="$ROOT"; ROOT="$BUILD"
  share_network "$ROOT"
  mount_into "$ROOT"
  say "creating $VENV and installing the base runtime from PyPI's aarch64 wheels: $BASE_DEPS"
  T0=$(date +%s)
  in_root "python3 -m venv $VENV && $VENV/bin/pip install -q --only-binary=:all: $BASE_DEPS" \
    || cannot_run "pip could not install the base runtime inside the arm64 root"
  say "base runtime installed in $(( $(date +%s) - T0 )) s"
  unmount_all
  ROOT="$ROOT_FINAL"
  mv "$BUILD" "$ROOT"
  touch "$ROOT/.gvd-root-ready"
else
  say "reusing the cached arm64 root $ROOT (--rebuild to start over)"
fi

# --- a wheel of this repo, installed natively (throwaway venv) and into the root ----------------------
prepare_native
share_network "$ROOT"
mount_into "$ROOT"
rm -rf "$ROOT/tmp/gvd-check"; mkdir -p "$ROOT/tmp/gvd-check/clips"
cp "$WHEEL" "$ROOT/tmp/gvd-check/"
say "installing $(basename "$WHEEL") into the arm64 root"
# The version number does not change between runs: force the reinstall of gvd itself (not its deps),
# or pip would keep the copy from an earlier run.
in_root "$VENV/bin/pip install -q --only-binary=:all: /tmp/gvd-check/$(basename "$WHEEL") \
  && $VENV/bin/pip install -q --force-reinstall --no-deps /tmp/gvd-check/$(basename "$WHEEL")" \
  || { echo "FAIL: the gvd wheel does not install on arm64 (see pip's message above)"; exit 1; }
in_root "$VENV/bin/python -c 'import platform, sys, numpy, onnxruntime; \
print(\"arm64 root:\", platform.machine(), \"Python\", sys.version.split()[0], \"numpy\", numpy.__version__, \"onnxruntime\", onnxruntime.__version__)'" 2>/dev/null \
  || { echo "FAIL: numpy/onnxruntime do not import on arm64"; exit 1; }

# --- clips ------------------------------------------------------------------------------------------
if [[ -z "$CLIPS" ]]; then
  if [[ -n "$(audio_in "$REPO/models/samples" 2>/dev/null)" ]]; then
    CLIPS="$REPO/models/samples"
  else
    command -v flite >/dev/null || cannot_run "no clips in models/samples and no flite to synthesise some"
    CLIPS="$WORK/clips"; mkdir -p "$CLIPS"
    say "models/samples is empty: synthesising clips with flite"
    flite -voice slt -t "The weather is lovely today and I will walk to the market." -o "$CLIPS/flite_slt.wav"
    flite -voice kal -t "Please send the report before the meeting starts tomorrow." -o "$CLIPS/flite_kal.wav"
    flite -voice rms -t "Turn left at the second light and park behind the bank." -o "$CLIPS/flite_rms.wav"
    flite -voice awb -t "Our train leaves at seven, so pack your bags tonight." -o "$CLIPS/flite_awb.wav"
  fi
fi
[[ -n "$(audio_in "$CLIPS")" ]] || cannot_run "no .wav or .flac clips in $CLIPS"
audio_in "$CLIPS" | while read -r clip; do cp "$clip" "$ROOT/tmp/gvd-check/clips/"; done
say "clips: $(audio_in "$CLIPS" | wc -l) from $CLIPS"

# --- models -----------------------------------------------------------------------------------------
if [[ -z "$MODELS" ]]; then
  MODELS="$("$HOST_PY" - <<'PY' 2>/dev/null || true
from edge.model import list_models
print(",".join(m["name"] for m in list_models()))
PY
)"
fi
IFS=',' read -r -a MODEL_LIST <<< "${MODELS:-}"
[[ ${#MODEL_LIST[@]} -gt 0 ]] || MODEL_LIST=("")   # "" = the default model
say "models: ${MODELS:-(default)}"

# --- run both sides and compare -----------------------------------------------------------------------
say "running gvd predict --json natively and under emulation (emulated timings are meaningless: not reported)"
CLIP_NAMES="$(cd "$ROOT/tmp/gvd-check/clips" && ls | tr '\n' ' ')"
status=0
mkdir -p "$ROOT/tmp/gvd-check/models"
for model in "${MODEL_LIST[@]}"; do
  opt=""; arm_opt=""
  if [[ -f "$model" ]]; then  # an .onnx file rather than a shipped name: copy it into the root
    cp "$model" "$ROOT/tmp/gvd-check/models/"
    opt="--model $(realpath "$model")"; arm_opt="--model /tmp/gvd-check/models/$(basename "$model")"
  elif [[ -n "$model" ]]; then
    opt="--model $model"; arm_opt="$opt"
  fi
  tag="$(basename "${model:-default}" .onnx)"
  (cd "$ROOT/tmp/gvd-check/clips" && "$HOST_PY" -m edge predict $opt --json $CLIP_NAMES) > "$WORK/x86_$tag.json" \
    || { echo "FAIL: native gvd predict failed for model $tag"; status=1; continue; }
  # stderr goes to a log: onnxruntime warns that it cannot read the (emulated) CPU's features.
  in_root "cd /tmp/gvd-check/clips && $VENV/bin/gvd predict $arm_opt --json $CLIP_NAMES" \
    > "$WORK/arm64_$tag.json" 2> "$WORK/arm64_$tag.log" \
    || { tail -n 20 "$WORK/arm64_$tag.log"; echo "FAIL: gvd predict failed on arm64 for model $tag"; status=1; continue; }
  # int8 models quantise their activations at run time with each CPU's own kernels: x86 and arm64
  # round differently (measured: up to 1.7e-4 on the bundled clips), so they get INT8_TOL; labels
  # must still be identical.
  tol="$TOL"; [[ "$tag" == *int8* ]] && tol="$INT8_TOL"
  python3 - "$WORK/x86_$tag.json" "$WORK/arm64_$tag.json" "$tol" "$tag" <<'PY' || status=1
import json, math, sys

def load(path):
    text = open(path).read().strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSON lines
        data = [json.loads(line) for line in text.splitlines() if line.strip().startswith("{")]
    if isinstance(data, dict):
        data = data.get("results", [data])
    return data

def key(entry, index):
    for name in ("path", "file", "source", "input"):
        if name in entry:
            return str(entry[name]).rsplit("/", 1)[-1]
    return index

x86, arm = load(sys.argv[1]), load(sys.argv[2])
tol, tag = float(sys.argv[3]), sys.argv[4]
a = {key(e, i): e for i, e in enumerate(x86)}
b = {key(e, i): e for i, e in enumerate(arm)}
problems, worst = [], 0.0
if not a:
    problems.append("the native run returned no results")
if set(a) != set(b):
    problems.append(f"different clips: native {sorted(map(str, a))} vs arm64 {sorted(map(str, b))}")
for k in sorted(set(a) & set(b), key=str):
    ea, eb = a[k], b[k]
    if ea.get("label") != eb.get("label"):
        problems.append(f"{k}: label {ea.get('label')} (x86) vs {eb.get('label')} (arm64)")
    pairs = [("p_female", ea.get("p_female"), eb.get("p_female"))]
    for i, (sa, sb) in enumerate(zip(ea.get("segments") or [], eb.get("segments") or [])):
        pairs.append((f"segment {i} p_female", sa.get("p_female"), sb.get("p_female")))
    if len(ea.get("segments") or []) != len(eb.get("segments") or []):
        problems.append(f"{k}: {len(ea.get('segments') or [])} segments (x86) vs {len(eb.get('segments') or [])} (arm64)")
    for what, pa, pb in pairs:
        if (pa is None) != (pb is None):
            problems.append(f"{k}: {what} {pa} (x86) vs {pb} (arm64)")
        elif pa is not None:
            diff = abs(float(pa) - float(pb))
            worst = max(worst, diff)
            if not diff <= tol:
                problems.append(f"{k}: {what} {pa:.6f} (x86) vs {pb:.6f} (arm64), diff {diff:.2e} > {tol:g}")
    print(f"  [{tag}] {k}: {ea.get('label')} p_female={ea.get('p_female')} | arm64 {eb.get('label')} "
          f"p_female={eb.get('p_female')}")
print(f"  [{tag}] {len(a)} clips, largest probability difference {worst:.2e} (tolerance {tol:g})")
for p in problems:
    print(f"  [{tag}] MISMATCH {p}")
sys.exit(1 if problems else 0)
PY
done

unmount_all
ELAPSED=$(( $(date +%s) - START ))
if [[ $status -eq 0 ]]; then
  echo "PASS: gvd on Debian $SUITE arm64 (Raspberry Pi OS 64-bit base, emulated) matches the native run (${ELAPSED} s total)"
else
  echo "FAIL: gvd on Debian $SUITE arm64 differs from the native run or did not run (${ELAPSED} s total)"
fi
exit $status
