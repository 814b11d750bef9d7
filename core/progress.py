"""Progress of long work: services report through a Reporter; commands show it with rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter(Protocol):
    def start(self, label: str, total: int) -> None:
        """Begin a step of `total` units."""

    def advance(self, units: int = 1) -> None:
        """Mark `units` more of the current step done."""


class NullReporter:
    """Reports nothing: the default for services called from code and tests."""

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, units: int = 1) -> None:
        pass


NULL_REPORTER = NullReporter()


class RichReporter:
    """One progress bar per step, on stderr so stdout stays clean for data."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def start(self, label: str, total: int) -> None:
        self._finish()
        self._task = self._progress.add_task(label, total=max(total, 1))

    def advance(self, units: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, units)

    def _finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, completed=task.total)

    def close(self) -> None:
        self._finish()


@contextmanager
def rich_reporter(*, enabled: bool = True) -> Iterator[Reporter]:
    """A Reporter drawing rich progress bars on stderr (nothing when not `enabled`)."""
    if not enabled:
        yield NULL_REPORTER
        return
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    reporter = RichReporter(progress)
    with progress:
        try:
            yield reporter
        finally:
            reporter.close()
