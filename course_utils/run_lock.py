"""One run per directory: a lock file that a training process holds for its whole run.

Checking that a directory is free and writing into it are two steps; two processes started at
once (the same command in two terminals, a notebook cell run twice) would both pass the check
and both train there. So ``train`` first creates ``train.lock`` in the run directory with
``O_CREAT | O_EXCL``, which exactly one of them can do, and removes it when the run ends, by an
exception too. The lock holds the process id, host and start time: a second process stops at
once with one line naming the holder.

A process killed with ``kill -9`` leaves its lock behind. The next run on the same host sees
that the process is gone and takes the lock over, with a line saying so. A lock from another
host (a run directory on a shared file system) is not taken over while its holder refreshes it
(every 15 s): that process may be running there. Only a lock left unrefreshed for 2 minutes is,
which is what a Colab disconnect leaves on Drive: the new machine has another host name.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from course_utils.run_files import RunDirError

LOCK_NAME = "train.lock"
HEARTBEAT_SECONDS = 15  # the holder touches its lock this often
STALE_AFTER_SECONDS = 120  # a lock from another host untouched this long: its holder is gone


class RunDirBusy(RunDirError):
    """Another process holds the run directory's lock."""


def _pid_running(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there: never judge a lock stale
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _read_holder(path: Path, wait_seconds: float = 1.0) -> dict | None:
    """The lock's content; ``None`` if the file is gone. A lock is written right after its atomic
    creation, so an empty or partial one is read again for up to ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            holder = json.loads(path.read_text())
            if isinstance(holder, dict) and isinstance(holder.get("pid"), int):
                return holder
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            pass
        if time.monotonic() > deadline:
            return {"pid": None, "host": "?", "started": "?"}  # unreadable: never taken over
        time.sleep(0.05)


def _stale_reason(holder: dict, path: Path) -> str | None:
    """Why the lock's holder is gone, or ``None`` if it may be running."""
    if holder["pid"] is None:
        return None
    if holder.get("host") == socket.gethostname():
        return None if _pid_running(holder["pid"]) else "which is no longer running"
    try:
        idle = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    return f"unrefreshed for {idle:.0f} s" if idle > STALE_AFTER_SECONDS else None


def _describe(holder: dict) -> str:
    if holder["pid"] is None:
        return "an unknown process (the lock is unreadable)"
    return f"process {holder['pid']} on {holder.get('host', '?')} since {holder.get('started', '?')}"


def _take_over(path: Path, stale: dict) -> bool:
    """Remove a stale lock, unless another process replaced it meanwhile; ``True`` if removed."""
    aside = path.with_name(f".{LOCK_NAME}.{os.getpid()}.stale")
    try:
        os.replace(path, aside)  # atomic: of several processes taking over, one moves the file
    except FileNotFoundError:
        return False
    if _read_holder(aside, wait_seconds=0) != stale:  # a fresh lock was moved: put it back
        os.replace(aside, path)
        return False
    aside.unlink()
    return True


class RunLock:
    """The lock of one run directory, held by this process; ``release`` removes it."""

    def __init__(self, run_dir: Path, log=print):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.token = uuid.uuid4().hex
        # The top folder this lock creates: removed again if the run ends without writing anything.
        self.created = next((p for p in reversed([self.run_dir, *self.run_dir.parents]) if not p.exists()), None)
        self.held = True
        self._released = threading.Event()
        self._acquire(log)

    def _acquire(self, log) -> None:
        content = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                              "token": self.token}) + "\n"
        for _ in range(5):
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileNotFoundError:  # another process removed the folder it had created: again
                continue
            except FileExistsError:
                holder = _read_holder(self.path)
                if holder is None:  # released meanwhile
                    continue
                stale = _stale_reason(holder, self.path)
                if stale is None:
                    raise RunDirBusy(f"{self.run_dir}: another run is using this directory ({self.path} is held by "
                                     f"{_describe(holder)}); wait for it to end, or delete {LOCK_NAME} if that "
                                     "process is no longer running") from None
                if _take_over(self.path, holder):
                    log(f"{self.path}: taking over the lock of {_describe(holder)}, {stale}")
                continue
            except OSError as err:  # read-only: a copy of a finished run is only read; anything else stops here
                if (self.run_dir / "final.json").is_file():
                    self.held = False
                    return
                raise RunDirError(f"{self.run_dir}: cannot write here ({err.strerror}); "
                                  "choose another run directory") from None
            with os.fdopen(fd, "w") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            threading.Thread(target=self._refresh, name=f"{LOCK_NAME} heartbeat", daemon=True).start()
            return
        raise RunDirBusy(f"{self.run_dir}: could not take {LOCK_NAME}: other processes keep creating and removing it")

    def _refresh(self) -> None:
        while not self._released.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)  # the mtime says "still running" to other hosts

    def release(self) -> None:
        self._released.set()
        if not self.held:
            return
        holder = _read_holder(self.path, wait_seconds=0)
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        if self.created is not None:
            for folder in [self.run_dir, *self.run_dir.parents]:
                with contextlib.suppress(OSError):  # not empty (the run wrote files), or gone: keep
                    folder.rmdir()
                if folder == self.created or folder.exists():
                    break


@contextlib.contextmanager
def holding(run_dir: Path, log=print):
    """Hold ``run_dir``'s lock for the ``with`` block (released by an exception too)."""
    lock = RunLock(run_dir, log)
    try:
        yield lock
    finally:
        lock.release()


def one_run_per_directory(default_run_dir):
    """Decorate ``train(config, run_dir=None, ..., log=print)`` so that the call holds the run
    directory's lock from its first check of the directory to its last write.

    ``default_run_dir(config)``: the directory when ``run_dir`` is ``None``. Under ``torchrun``
    only rank 0 (the one that writes) takes the lock; the other ranks follow it.
    """
    def decorate(train):
        @functools.wraps(train)
        def locked(config, run_dir=None, *args, **kwargs):
            run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
            if int(os.environ.get("RANK", "0")) != 0:
                return train(config, run_dir, *args, **kwargs)
            with holding(run_dir, kwargs.get("log", print)):
                return train(config, run_dir, *args, **kwargs)

        return locked

    return decorate
