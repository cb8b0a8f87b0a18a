"""Progress of long loops that works in logs too: a tqdm bar on a terminal, otherwise a line on stderr every tenth
of the work and at least every `log_every` seconds; nothing when quiet. Imports nothing of ours."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")


def say(message: str) -> None:
    """One line on stderr (flushed, so it shows in logs as it happens)."""
    print(message, file=sys.stderr, flush=True)


def progress_lines(items: Iterable[Item], total: int, desc: str, progress: bool | None = None,
                   log_every: float = 30.0, unit: str = "chunk") -> Iterator[Item]:
    """Yield `items`, showing progress: `progress=None` a bar on a terminal and lines otherwise, `True` a bar,
    `False` nothing."""
    from tqdm.auto import tqdm

    on_terminal = bool(getattr(sys.stderr, "isatty", lambda: False)())
    if progress is False:
        yield from items
        return
    if progress or on_terminal:
        yield from tqdm(items, total=total, desc=desc, unit=unit)
        return
    started = last = time.perf_counter()
    next_tenth = 1
    for done, item in enumerate(items, start=1):
        yield item
        now = time.perf_counter()
        if done * 10 >= next_tenth * max(total, 1) or now - last >= log_every or done == total:
            next_tenth = done * 10 // max(total, 1) + 1
            last = now
            left = (now - started) / done * max(total - done, 0)
            say(f"{desc}: {done}/{total} {unit}s ({100 * done / max(total, 1):.0f}%), {now - started:.1f} s elapsed, "
                f"~{left:.1f} s left")
