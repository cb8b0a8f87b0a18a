"""Atomic folder replacement: the one way this library puts a finished folder in place.

Used by artifact saves, the extraction cache and training checkpoints. A folder is written completely under a
temporary name beside its target, then swapped in with one `renameat2(RENAME_EXCHANGE)` system call (Linux), so a
reader sees either the whole old folder or the whole new one. Where that call is missing, the old folder is renamed
to a backup, the new one renamed into place and the backup restored if that fails; only that short window lacks a
folder at the target, and the old content is never deleted before the new one is in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically; `False` where the platform has no `renameat2`."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    return renameat2(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0


def replace_folder(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete folder `new` at `target`, replacing what is there; `new` is consumed.

    The old `target` stays loadable until the swap.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # `new` now holds the old folder
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, backup)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def apply_umask(folder: Path, umask: int) -> None:
    """Give every file under `folder` the mode the user's umask gives a new file (0644 under umask 022), and every
    folder the one it gives a new folder: writers such as safetensors make private (0600) temporary files."""
    for path in folder.rglob("*"):
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `target`; on a clean exit it replaces `target` atomically.

    On an error (or an interrupt) the temporary folder is removed and `target` is left as it was.

    Examples:
        >>> with atomic_folder("outputs/adapter") as tmp:  # doctest: +SKIP
        ...     (tmp / "config.json").write_text("{}")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the swapped-in folder gets ordinary permissions
    try:
        yield tmp
        apply_umask(tmp, umask)
        replace_folder(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
