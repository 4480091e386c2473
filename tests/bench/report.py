"""One line per benchmark: ``<name>: flotilla=<v> baseline=<v> ratio=<v> target=<t>``."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Target:
    """A bound on the ratio (``of="ratio"``) or on Flotilla's own figure (``of="flotilla"``)."""

    compare: str
    bound: float
    of: str = "ratio"
    unit: str = ""

    def met(self, result: Result) -> bool:
        """Whether ``result`` is within the bound."""
        value = result.ratio if self.of == "ratio" else result.flotilla
        return _COMPARE[self.compare](value, self.bound)

    def __str__(self) -> str:
        what = "ratio" if self.of == "ratio" else "flotilla"
        return f"{what}{self.compare}{self.bound:g}{self.unit}"


@dataclass(frozen=True)
class Result:
    """Flotilla's figure and the baseline's, measured side by side."""

    name: str
    flotilla: float
    baseline: float
    unit: str
    target: Target | None

    @property
    def ratio(self) -> float:
        """flotilla / baseline."""
        return self.flotilla / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        """Whether the target is met (None without a target)."""
        return None if self.target is None else self.target.met(self)

    def line(self) -> str:
        """The benchmark's line."""
        target = "none" if self.target is None else str(self.target)
        return (
            f"{self.name}: flotilla={_figure(self.flotilla, self.unit)} "
            f"baseline={_figure(self.baseline, self.unit)} ratio={self.ratio:.2f} target={target}"
        )


def _figure(value: float, unit: str) -> str:
    return f"{value:.0f}{unit}" if value >= 100 else f"{value:.2f}{unit}"
