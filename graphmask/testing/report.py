"""What a check verified, and what it could not: :class:`CheckReport`.

Every check of :mod:`graphmask.testing` returns one when the properties it could verify
hold (and raises ``AssertionError`` when one does not). A part that cannot run on this
model or batch (padding that cannot be appended to a fixed time axis, an op whose mask
semantics the checker does not know, a batch with no masked step) is never dropped
silently: it is listed in ``skipped`` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckReport"]


@dataclass(frozen=True)
class CheckReport:
    """The outcome of a check whose verified properties all hold.

    Attributes
    ----------
    check : str
        The check's name (``"check_padding_invariance"``).
    checked : tuple of str
        The parts that ran and held.
    skipped : tuple of str
        The parts that could not be checked, each with its reason.
    """

    check: str
    checked: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """True when nothing was skipped."""
        return not self.skipped

    def assert_complete(self) -> CheckReport:
        """Raise ``AssertionError`` listing the skipped parts, if any; else return self."""
        if self.skipped:
            raise AssertionError(f"{self.check} could not check everything:\n"
                                 + "\n".join(f"  - {s}" for s in self.skipped))
        return self

    def __str__(self) -> str:
        lines = [f"{self.check}: {len(self.checked)} part(s) checked, "
                 f"{len(self.skipped)} skipped"]
        lines += [f"  checked: {c}" for c in self.checked]
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


class Recorder:
    """Collects checked and skipped parts while a check runs (kept in order, no repeats)."""

    def __init__(self, check: str):
        self.check = check
        self._checked: dict[str, None] = {}
        self._skipped: dict[str, None] = {}

    def ok(self, what: str) -> None:
        self._checked[what] = None

    def skip(self, what: str) -> None:
        self._skipped[what] = None

    def merge(self, report: CheckReport) -> None:
        """Add another check's report, its items prefixed with its name."""
        for c in report.checked:
            self.ok(f"{report.check}: {c}")
        for s in report.skipped:
            self.skip(f"{report.check}: {s}")

    def report(self) -> CheckReport:
        return CheckReport(self.check, tuple(self._checked), tuple(self._skipped))
