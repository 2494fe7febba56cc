"""Run folders: claimed once, locked while written, never overwritten by accident.

:func:`claim_run_dir` is how ``train.py`` gets its output folder:

* the default folder ``runs/<scenario>-<YYYYmmdd-HHMMSS>`` is created with an exclusive
  ``mkdir``; when a run started in the same second already took the name, ``-2``,
  ``-3`` ... is appended, so two runs never share a default folder;
* an explicit ``--out`` that already holds files is refused, unless the run resumes it
  (``--resume``) or ``--overwrite`` is given (which empties it first);
* the folder is locked (:class:`RunLock`: ``RUN_DIR/.lock`` with an exclusive
  ``fcntl.flock`` and the owner's pid) for the whole run; a second writer is refused
  naming the pid that holds it. The kernel drops the lock when its process dies, even
  by ``kill -9``, so a lock file left behind is stale by construction and simply
  taken over.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

__all__ = ["LOCK_NAME", "RunDirError", "RunLock", "claim_run_dir", "default_run_dir"]

LOCK_NAME = ".lock"


class RunDirError(RuntimeError):
    """A run folder that cannot be used (one line, for the command line)."""


class RunLock:
    """An exclusive, process-lifetime lock on a run folder (``RUN_DIR/.lock``)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RunDirError(f"run folder {self.run_dir}: cannot create its lock file ({exc.strerror}); "
                              "choose a writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            owner: list[str] = []
            for _ in range(5):  # the holder writes its pid just after its flock: give it a moment
                try:
                    owner = os.pread(fd, 64, 0).decode("ascii", "replace").split()
                except OSError:
                    break
                if owner:
                    break
                time.sleep(0.02)
            os.close(fd)
            who = f"process {owner[0]}" if owner else "another process"
            raise RunDirError(f"run folder {self.run_dir} is in use by {who} (lock {self.path}); "
                              "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def default_run_dir(name: str, root: str | os.PathLike = "runs") -> Path:
    """Create and return a fresh folder ``ROOT/<name>-<YYYYmmdd-HHMMSS>[-k]`` (an
    exclusive ``mkdir``: two runs in the same second get two folders)."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"cannot create the runs folder {root} ({exc.strerror}); give --out") from None
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for k in range(1, 10_000):
        path = root / (stem if k == 1 else f"{stem}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunDirError(f"cannot create the run folder {path} ({exc.strerror}); give --out") from None
        return path
    raise RunDirError(f"no free run folder name {root / stem}-k; give --out")


def _contents(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)


def claim_run_dir(out: str | os.PathLike | None, *, name: str = "run", resume: bool = False,
                  overwrite: bool = False, root: str | os.PathLike = "runs") -> tuple[Path, RunLock]:
    """The run folder of a new (or resumed) run, locked. See the module docstring.

    Args:
        out: the ``--out`` folder, or ``None`` for a fresh default folder.
        name: scenario name for the default folder.
        resume: the folder is an interrupted run to continue (it must exist).
        overwrite: empty an existing folder instead of refusing it.

    Raises:
        RunDirError: ``out`` is a file or cannot be created, holds another run (without
            ``resume``/``overwrite``), is locked by a running process, or (``resume``)
            does not exist.
    """
    if out is None:
        if resume:
            raise RunDirError("--resume needs the run folder to continue")
        path = default_run_dir(name, root)
        return path, RunLock(path).acquire()
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path} is a file, not a folder; choose a folder path")
    if resume:
        if not path.is_dir():
            raise RunDirError(f"--resume {path}: no such run folder")
    else:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"--out {path}: cannot create the folder ({exc.strerror or exc}); "
                              "choose a writable folder path") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirError(f"--out {path}: the folder is not writable; choose another")
    lock = RunLock(path).acquire()
    try:
        if not resume:
            existing = _contents(path)
            if existing and not overwrite:
                shown = ", ".join(existing[:5]) + (" ..." if len(existing) > 5 else "")
                raise RunDirError(f"--out {path} already holds a run ({shown}); continue it with --resume {path}, "
                                  "replace it with --overwrite, or choose another --out")
            for entry in existing:
                p = path / entry
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()
    except BaseException:
        lock.release()
        raise
    return path, lock
