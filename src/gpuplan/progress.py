"""Progress bars for work that can take more than a second (plan searches, verify, sweeps, the advisor).

Drawn with ``rich`` on stderr, so ``--json`` on stdout stays clean, and cleared when done. Nothing is drawn when
``rich`` is not installed, when stdout or stderr is not a terminal (pipes, CI, tests), or when ``GPUPLAN_NO_PROGRESS``
is set. Usage::

    with progress(len(layouts), "searching layouts") as advance:
        for layout in layouts:
            ...
            advance()

    for value in track(values, "sweeping batch"):
        ...
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    """Whether a bar would be drawn: rich importable, stdout and stderr terminals, GPUPLAN_NO_PROGRESS unset."""
    if os.environ.get("GPUPLAN_NO_PROGRESS"):
        return False
    try:
        if not (sys.stdout.isatty() and sys.stderr.isatty()):
            return False
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
    try:
        import rich.progress  # noqa: F401
    except ImportError:
        return False
    return True


def _noop(n: int = 1) -> None:
    return None


@contextmanager
def progress(total: int | None, description: str, *, show: bool | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n=1)``; a transient rich bar on stderr when :func:`enabled` (or ``show``) says so."""
    if not (enabled() if show is None else show):
        yield _noop
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def track(items: Iterable[T], description: str, *, total: int | None = None) -> Iterator[T]:
    """Iterate over ``items`` with a bar (see :func:`progress`)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(total, description) as advance:
        for item in items:
            yield item
            advance()
