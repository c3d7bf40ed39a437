"""Retraining as a managed job: a tracked process group whose status lives in the feedback database.

* The trigger is armed only when retraining can work: the default command runs ``gvd train``, which
  needs the ``[train]`` extra (TensorFlow); without it the server says so at start, in ``/health``
  and in ``GET /feedback``, and corrections simply accumulate.
* A run is ``/bin/sh`` in its own session (process group), at lower priority, writing its exit code
  to ``runs/<n>/exit_code`` when it ends. Its row (pid, process start time, status) survives a
  restart: a server that starts while a run is still going adopts it and reports its real outcome.
* A graceful shutdown terminates the whole group (no trainer outlives the server it belongs to);
  a run that fails, is cancelled or was interrupted gives its corrections back to the next run.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import FeedbackStore, utc_now

# {gvd} runs this interpreter's gvd, so the command works without the venv on PATH. It is run by
# /bin/sh in the server's working folder; ../shared/data is the project's corpus of real recordings.
DEFAULT_RETRAIN_COMMAND = (
    "{gvd} train --data {feedback_dir} --data ../shared/data --out {out}/train"
    " && {gvd} export --train-dir {out}/train --out {out}/models"
)
EXIT_FILE = "exit_code"
LOG_FILE = "retrain.log"
FINAL = ("succeeded", "failed", "cancelled", "interrupted")


@dataclass(frozen=True)
class RetrainOptions:
    threshold: int = 20  # corrections since the previous run that start a new one
    command: str = DEFAULT_RETRAIN_COMMAND  # /bin/sh command; {gvd} {python} {feedback_dir} {out} {run}
    cwd: str | None = None  # working folder of the command (default: the server's)
    nice: int = 10  # lower priority so that serving stays responsive while it trains
    stop_grace_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("the retraining threshold must be at least 1")
        if not self.command.strip():
            raise ValueError("the retraining command is empty")


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str | None = None


def retraining_availability(command: str) -> Availability:
    """A command that runs ``gvd train`` needs TensorFlow and the training package in this install."""
    if "{gvd} train" not in command and "gvd train" not in command:
        return Availability(True)
    missing = [name for name in ("tensorflow", "train") if importlib.util.find_spec(name) is None]
    if missing:
        return Availability(False, "retraining is off: 'gvd train' needs the training extra "
                                   f"({', '.join(missing)} not installed): pip install 'gvd[train]'")
    return Availability(True)


@dataclass(frozen=True)
class RunRecord:
    id: int
    status: str  # starting | running | succeeded | failed | cancelled | interrupted
    started: str
    finished: str | None
    returncode: int | None
    pid: int | None
    proc_start: str | None
    out_dir: str  # relative to the feedback folder
    command: str
    corrections: int
    note: str | None

    def public(self) -> dict[str, Any]:
        """What anyone may see: no paths, no command, no process ids, no notes (they may quote errors)."""
        return {"id": self.id, "status": self.status, "started": self.started, "finished": self.finished,
                "returncode": self.returncode, "corrections": self.corrections}

    def admin(self) -> dict[str, Any]:
        return {**self.public(), "note": self.note, "out_dir": self.out_dir, "log": f"{self.out_dir}/{LOG_FILE}",
                "command": self.command, "pid": self.pid}


def _proc_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): tells a reused pid from ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _group_members(pgid: int) -> list[str] | None:
    """States of the group's processes from /proc (None where /proc is not available)."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    states = []
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            states.append(fields[0])
    return states


def _group_alive(pid: int | None, proc_start: str | None) -> bool:
    """The run's process group still has a live member (zombies left unreaped do not count)."""
    if not pid:
        return False
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    leader = _proc_start(pid)
    if leader is not None and proc_start is not None and leader != proc_start:
        return False  # the pid was reused by another process
    members = _group_members(pid)
    return members is None or any(state != "Z" for state in members)


class RetrainJobs:
    def __init__(self, store: FeedbackStore, options: RetrainOptions = RetrainOptions(),
                 availability: Availability | None = None,
                 on_success: Callable[[RunRecord], str | None] | None = None):
        self.store = store
        self.options = options
        self.availability = availability or retraining_availability(options.command)
        self.on_success = on_success  # e.g. evaluate and promote the new model; returns a note
        self._threads: list[threading.Thread] = []
        self._owned: dict[int, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._recover()

    # -- records --------------------------------------------------------------------------------
    def _run(self, run_id: int) -> RunRecord:
        row = self.store.query("SELECT * FROM runs WHERE id = ?", (run_id,))[0]
        return RunRecord(*row)

    def runs(self, limit: int = 20) -> list[RunRecord]:
        return [RunRecord(*row) for row in self.store.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))]

    def active(self) -> RunRecord | None:
        rows = self.store.query("SELECT * FROM runs WHERE status IN ('starting', 'running') ORDER BY id DESC LIMIT 1")
        return RunRecord(*rows[0]) if rows else None

    def _finish(self, run_id: int, status: str, returncode: int | None, note: str | None = None) -> None:
        """Final status; anything but success gives the run's corrections back to the next one."""
        with self.store.transaction() as db:
            current = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if current is None or current[0] in FINAL:
                return
            db.execute("UPDATE runs SET status = ?, finished = ?, returncode = ?, note = COALESCE(?, note) "
                       "WHERE id = ?", (status, utc_now(), returncode, note, run_id))
            if status != "succeeded":
                given = db.execute("UPDATE corrections SET run_id = NULL WHERE run_id = ?", (run_id,)).rowcount
                db.execute("UPDATE totals SET pending = pending + ? WHERE id = 1", (given,))
        if status == "succeeded" and self.on_success is not None:
            try:
                note = self.on_success(self._run(run_id))
            except Exception as exc:  # the run itself succeeded; say why its model was not used
                note = f"the new model could not be evaluated: {exc}"
            if note:
                with self.store.transaction() as db:
                    db.execute("UPDATE runs SET note = ? WHERE id = ?", (note, run_id))

    def _exit_code(self, run: RunRecord) -> int | None:
        try:
            return int((self.store.root / run.out_dir / EXIT_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    # -- start-up: adopt or close what a previous server left -----------------------------------
    def _recover(self) -> None:
        run = self.active()
        if run is None:
            return
        code = self._exit_code(run)
        if code is not None:
            self._finish(run.id, "succeeded" if code == 0 else "failed", code)
        elif _group_alive(run.pid, run.proc_start):
            self._spawn_thread(self._poll_adopted, run)
        else:
            self._finish(run.id, "interrupted", None, "the run ended without an exit code while no server watched it")

    # -- trigger --------------------------------------------------------------------------------
    def maybe_start(self) -> bool:
        """Start a run when enough corrections wait and none is running; True if one was started."""
        if not self.availability.available or self._stopping.is_set():
            return False
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE status IN ('starting', 'running')").fetchone():
                return False
            pending = db.execute("SELECT pending FROM totals WHERE id = 1").fetchone()[0]
            if pending < self.options.threshold:
                return False
            run_id = (db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM runs").fetchone()[0])
            out_dir = f"runs/{run_id}"
            command = self._command(self.store.root / out_dir, run_id)
            db.execute("INSERT INTO runs (id, status, started, out_dir, command, corrections) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       (run_id, "starting", utc_now(), out_dir, command, pending))
            db.execute("UPDATE corrections SET run_id = ? WHERE run_id IS NULL AND predicted_label != correct_label",
                       (run_id,))
            db.execute("UPDATE totals SET pending = 0 WHERE id = 1")
        out = self.store.root / out_dir
        shutil.rmtree(out, ignore_errors=True)  # a folder left by a run whose row was never committed
        out.mkdir(parents=True)
        try:
            process = self._spawn(command, out)
        except OSError as exc:
            self._finish(run_id, "failed", None, f"the command could not start: {exc}")
            return False
        with self.store.transaction() as db:
            db.execute("UPDATE runs SET status = 'running', pid = ?, proc_start = ? WHERE id = ?",
                       (process.pid, _proc_start(process.pid), run_id))
        self._owned[run_id] = process
        self._spawn_thread(self._watch_owned, run_id, process)
        return True

    def _command(self, out: Path, run_id: int) -> str:
        values = {"gvd": f"{shlex.quote(sys.executable)} -m edge", "python": shlex.quote(sys.executable),
                  "feedback_dir": shlex.quote(str(self.store.root)), "out": shlex.quote(str(out)),
                  "run": str(run_id), "timestamp": str(run_id)}
        command = self.options.command
        for key, value in values.items():  # only our placeholders: other braces stay untouched
            command = command.replace("{" + key + "}", value)
        return command

    def _spawn(self, command: str, out: Path) -> subprocess.Popen:
        exit_tmp, exit_file = shlex.quote(str(out / f"{EXIT_FILE}.tmp")), shlex.quote(str(out / EXIT_FILE))
        # The exit code goes to a file, so that a server started later can read how the run ended.
        wrapper = f"( {command}\n); rc=$?; echo $rc > {exit_tmp} && mv {exit_tmp} {exit_file}; exit $rc"
        argv = ["/bin/sh", "-c", wrapper]
        if self.options.nice and shutil.which("nice"):
            argv = ["nice", "-n", str(self.options.nice), *argv]
        with open(out / LOG_FILE, "wb") as log:
            return subprocess.Popen(argv, cwd=self.options.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "GVD_FEEDBACK_DIR": str(self.store.root),
                                         "GVD_RETRAIN_OUT": str(out)})

    def _spawn_thread(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="gvd-retrain-watcher")
        self._threads.append(thread)
        thread.start()

    def _watch_owned(self, run_id: int, process: subprocess.Popen) -> None:
        returncode = process.wait()
        self._owned.pop(run_id, None)
        if self._stopping.is_set():
            return
        code = self._exit_code(self._run(run_id))
        code = returncode if code is None else code
        self._finish(run_id, "succeeded" if code == 0 else "failed", code)

    def _poll_adopted(self, run: RunRecord) -> None:
        while not self._stopping.wait(0.5):
            code = self._exit_code(run)
            if code is not None:
                self._finish(run.id, "succeeded" if code == 0 else "failed", code)
                return
            if not _group_alive(run.pid, run.proc_start):
                self._finish(run.id, "interrupted", None, "the run ended without an exit code")
                return

    # -- shutdown, tests ------------------------------------------------------------------------
    def stop(self) -> None:
        """Terminate the running group (SIGTERM, then SIGKILL after the grace period); it is cancelled."""
        self._stopping.set()
        run = self.active()
        if run is None or not run.pid:
            return
        process = self._owned.pop(run.id, None)
        if _group_alive(run.pid, run.proc_start):
            _terminate_group(run.pid, self.options.stop_grace_seconds, process)
        if process is not None:
            process.wait()
        self._finish(run.id, "cancelled", None, "the server stopped; the run was terminated")

    def wait(self, timeout: float = 60.0) -> RunRecord | None:
        """Wait until no run is active (tests); returns the last run."""
        deadline = time.monotonic() + timeout
        while self.active() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        runs = self.runs(1)
        return runs[0] if runs else None


def _terminate_group(pgid: int, grace: float, leader: subprocess.Popen | None = None) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if leader is not None:
            leader.poll()  # reap our own child, or its zombie keeps the group looking alive
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
