"""Training prices and the off-peak window: which price a training run pays, and whether it may start.

Pure functions of a time, the ``monitoring.prices`` object (``train_usd_per_hour``: the on-peak
price, and the only one while no window is set; ``train_off_peak_usd_per_hour``) and the
``monitoring.training_window`` object (``enabled``, ``time_zone``, ``start``, ``end``,
``outside``). Both are passed in (duck-typed), so the floor imports no service: the monitor's
retraining trigger, ``make kfp-submit`` and the select stage's return-on-investment figures call
the same functions.

The window is ``[start, end)`` in local time of ``time_zone``; ``end`` before ``start`` means it
crosses midnight (22:00-06:00). ``start == end`` is refused by the settings (an empty or a
full-day window says nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

OFF_PEAK, ON_PEAK = "off-peak", "on-peak"


class OutsideWindow(RuntimeError):
    """A training run asked to start outside the off-peak window, and not forced."""


def parse_hhmm(text: str) -> time:
    """``"22:00"`` -> time(22, 0); ValueError for anything else."""
    hours, sep, minutes = text.partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit()) or len(minutes) != 2:
        raise ValueError(f"expected HH:MM, got {text!r}")
    h, m = int(hours), int(minutes)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return time(h, m)


def _local(when: datetime, window: Any) -> datetime:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(ZoneInfo(window.time_zone))


def in_off_peak(when: datetime, window: Any) -> bool:
    """Whether ``when`` lies inside the off-peak window (always True when it is not enabled)."""
    if not window.enabled:
        return True
    now = _local(when, window).time().replace(second=0, microsecond=0)
    start, end = parse_hhmm(window.start), parse_hhmm(window.end)
    if start < end:
        return start <= now < end
    return now >= start or now < end  # crosses midnight


def next_opening(when: datetime, window: Any) -> datetime:
    """The first time at or after ``when`` that the window is open (``when`` itself if it is),
    in the window's time zone."""
    local = _local(when, window)
    if in_off_peak(local, window):
        return local
    start = parse_hhmm(window.start)
    opening = local.replace(hour=start.hour, minute=start.minute, second=0, microsecond=0)
    if opening <= local:
        opening += timedelta(days=1)
    return opening


def training_price(when: datetime | None, prices: Any, window: Any) -> tuple[float, str]:
    """``(USD per accelerator-hour, "off-peak" or "on-peak")`` for a training run started at
    ``when``. Without a window every run pays ``train_usd_per_hour`` (``on-peak``); an unknown
    start time (None) with a window is priced on-peak (never the cheaper guess)."""
    if not window.enabled or when is None or not in_off_peak(when, window):
        return float(prices.train_usd_per_hour), ON_PEAK
    return float(prices.train_off_peak_usd_per_hour), OFF_PEAK


def estimate(accelerator_hours: float | None, when: datetime, prices: Any, window: Any) -> dict[str, Any]:
    """The cost estimate of a training run of ``accelerator_hours`` (the last run's, as recorded
    by the training stages; None = unknown) started at ``when``: both prices and what it pays now."""
    price, period = training_price(when, prices, window)
    on, off = float(prices.train_usd_per_hour), float(prices.train_off_peak_usd_per_hour)
    known = accelerator_hours is not None
    return {
        "accelerator_hours": accelerator_hours,
        "on_peak_usd_per_hour": on,
        "off_peak_usd_per_hour": off,
        "on_peak_usd": accelerator_hours * on if known else None,
        "off_peak_usd": accelerator_hours * off if known else None,
        "period_now": period,
        "usd_now": accelerator_hours * price if known else None,
    }


def describe_estimate(est: dict[str, Any]) -> str:
    """``0.052 accelerator-h: $0.0052 on-peak ($0.10/h), $0.0031 off-peak ($0.06/h)``."""
    hours = est["accelerator_hours"]
    on, off = est["on_peak_usd_per_hour"], est["off_peak_usd_per_hour"]
    if hours is None:
        return f"accelerator-hours unknown (no training run recorded yet); ${on:g}/h on-peak, ${off:g}/h off-peak"
    return (
        f"{hours:.4g} accelerator-h: ${est['on_peak_usd']:.4g} on-peak (${on:g}/h), "
        f"${est['off_peak_usd']:.4g} off-peak (${off:g}/h)"
    )


def describe_window(window: Any) -> str:
    return f"{window.start}-{window.end} {window.time_zone}"


def check_window(
    when: datetime, prices: Any, window: Any, accelerator_hours: float | None, force: bool = False
) -> dict[str, Any]:
    """May a training run start at ``when``? Returns ``{allowed, forced, period, opens_at,
    estimate, message}``; raises ``OutsideWindow`` (its message shows the window, when it opens
    and the estimate at both prices) when it is outside the window, ``window.outside`` is
    ``refuse`` and not ``force``. With ``outside: wait`` it returns ``allowed: False`` and the
    caller waits until ``opens_at`` (``wait_for_window``)."""
    est = estimate(accelerator_hours, when, prices, window)
    inside = in_off_peak(when, window)
    opens = next_opening(when, window)
    result = {
        "allowed": inside or force,
        "forced": bool(force and not inside),
        "period": est["period_now"],
        "window": describe_window(window) if window.enabled else None,
        "opens_at": opens.isoformat(timespec="minutes"),
        "estimate": est,
    }
    if inside:
        result["message"] = (
            "no training window set"
            if not window.enabled
            else f"inside the off-peak window {describe_window(window)}"
        )
        return result
    local = _local(when, window)
    wait = opens - local
    hours, rest = divmod(int(wait.total_seconds()) // 60, 60)
    where = (
        f"{local:%H:%M} {window.time_zone} is on-peak; the off-peak window is {describe_window(window)} "
        f"(opens in {hours}h{rest:02d}m, at {opens.isoformat(timespec='minutes')})"
    )
    if force:
        result["message"] = f"forced: {where}; paying the on-peak price. Estimate: {describe_estimate(est)}"
        return result
    if window.outside == "wait":
        result["message"] = f"waiting: {where}. Estimate: {describe_estimate(est)}"
        return result
    message = (
        f"training refused: {where}. Estimate for this run: {describe_estimate(est)}. "
        "Start it inside the window, or force it now (--force) at the on-peak price."
    )
    raise OutsideWindow(message)


def wait_for_window(
    check: dict[str, Any],
    window: Any,
    clock: Callable[[], datetime],
    sleep: Callable[[float], Any],
) -> dict[str, Any]:
    """With ``outside: wait``: sleep (in steps of at most a minute, on ``clock``) until the window
    opens, at ``check["opens_at"]`` (``check_window``'s result); return the check with
    ``waited_seconds``. ``OutsideWindow`` when the wait exceeds ``window.max_wait_hours``."""
    if check["allowed"]:
        return check
    opens = datetime.fromisoformat(check["opens_at"])
    wait = (opens - clock()).total_seconds()
    if wait > window.max_wait_hours * 3600:
        raise OutsideWindow(
            f"{check['message']}; the wait exceeds monitoring.training_window.max_wait_hours = {window.max_wait_hours:g}"
        )
    while (remaining := (opens - clock()).total_seconds()) > 0:
        sleep(min(60.0, remaining))
    return {**check, "allowed": True, "waited_seconds": round(wait)}
