"""Several figures of a report shown as one widget (an Evidently metric container).

Evidently draws every statistic metric (MeanValue, QuantileValue, SumValue ...) as its own
histogram of the column, titled with the value at three decimals: the ops report showed the same
latency histogram four times (mean, p50, p95, p99) and its cost as "current: 0.000". ``Figures``
computes the same metrics (same fingerprints, so the workspace's dashboard series are unchanged)
and renders them once: one counter row with each figure at three significant digits, and at most
one histogram.

Import it after ``llm.drift._evidently()`` (it subclasses Evidently's ``MetricContainer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, List, Optional, Tuple  # noqa: UP035 (pydantic v1 fields)

from evidently.core.container import MetricContainer
from evidently.legacy.renderers.html_widgets import CounterData, counter
from evidently.metrics import MeanValue, QuantileValue, SumValue

MEAN, SUM = "mean", "sum"  # statistic names; a quantile is its number, e.g. "0.95"


def statistic(stat: str, column: str) -> Any:
    """The Evidently metric of ``stat`` ("mean", "sum" or a quantile such as "0.95") of ``column``."""
    if stat == MEAN:
        return MeanValue(column=column)
    if stat == SUM:
        return SumValue(column=column)
    return QuantileValue(column=column, quantile=float(stat))


def figure_text(value: float) -> str:
    """Whole numbers as they are (4,500 tokens); others at three significant digits (costs are tiny
    numbers: a fixed number of decimals prints them as 0)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.3g}"


class Figures(MetricContainer):
    """``figures``: (label, statistic, column) each; ``histogram``: the column whose distribution
    is drawn once, under the counters (None: none)."""

    title: str
    figures: List[Tuple[str, str, str]]  # noqa: UP006
    histogram: Optional[str] = None  # noqa: UP045

    def generate_metrics(self, context: Any) -> Sequence[Any]:
        return [statistic(stat, column) for _, stat, column in self.figures]

    def render(self, context: Any, child_widgets: Any = None) -> list[Any]:
        counters = [
            CounterData(
                label=label, value=figure_text(context.get_metric_result(statistic(stat, column)).value)
            )
            for label, stat, column in self.figures
        ]
        widgets = [counter(title=self.title, counters=counters)]
        if self.histogram is not None:
            stat = next(s for _, s, c in self.figures if c == self.histogram)
            drawn = context.get_metric_result(statistic(stat, self.histogram)).widget or []
            side = " vs the previous window" if context.has_reference else ""
            widgets += [
                w.copy(update={"title": f"{self.title}: distribution in this window{side}"}) for w in drawn
            ]
        return widgets
