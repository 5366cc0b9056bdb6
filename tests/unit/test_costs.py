"""The off-peak training window and its prices (llm.costs, monitoring.training_window)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from components.common.params import ParamsError, from_dict
from llm.costs import OutsideWindow, check_window, estimate, in_off_peak, next_opening, training_price
from monitoring.settings import Prices, Settings, TrainingWindow

PRICES = Prices(serve_usd_per_hour=0.1, train_usd_per_hour=2.0, train_off_peak_usd_per_hour=0.8)
BERLIN = TrainingWindow(enabled=True, time_zone="Europe/Berlin", start="22:00", end="06:00")


def test_the_window_crosses_midnight_in_its_own_time_zone():
    # 2026-12-02 is winter time: Berlin = UTC+1.
    assert in_off_peak(datetime(2026, 12, 2, 21, 30, tzinfo=UTC), BERLIN)  # 22:30 Berlin
    assert in_off_peak(datetime(2026, 12, 2, 4, 59, tzinfo=UTC), BERLIN)  # 05:59 Berlin
    assert not in_off_peak(datetime(2026, 12, 2, 5, 0, tzinfo=UTC), BERLIN)  # 06:00 Berlin: closed
    assert not in_off_peak(datetime(2026, 12, 2, 20, 59, tzinfo=UTC), BERLIN)  # 21:59 Berlin
    day = TrainingWindow(enabled=True, time_zone="UTC", start="01:00", end="05:00")
    assert in_off_peak(datetime(2026, 12, 2, 1, 0, tzinfo=UTC), day)
    assert not in_off_peak(datetime(2026, 12, 2, 5, 0, tzinfo=UTC), day)
    assert (
        next_opening(datetime(2026, 12, 2, 13, 5, tzinfo=UTC), BERLIN).isoformat()
        == "2026-12-02T22:00:00+01:00"
    )
    assert (
        next_opening(datetime(2026, 12, 2, 21, 30, tzinfo=UTC), day).isoformat()
        == "2026-12-03T01:00:00+00:00"
    )


def test_the_price_follows_the_start_time_and_the_estimate_shows_both():
    assert training_price(datetime(2026, 12, 2, 22, 0, tzinfo=UTC), PRICES, BERLIN) == (0.8, "off-peak")
    assert training_price(datetime(2026, 12, 2, 12, 0, tzinfo=UTC), PRICES, BERLIN) == (2.0, "on-peak")
    assert training_price(None, PRICES, BERLIN) == (2.0, "on-peak")  # unknown start: never the cheap guess
    assert training_price(datetime(2026, 12, 2, 22, 0, tzinfo=UTC), PRICES, TrainingWindow()) == (
        2.0,
        "on-peak",
    )
    est = estimate(0.5, datetime(2026, 12, 2, 12, 0, tzinfo=UTC), PRICES, BERLIN)
    assert (est["on_peak_usd"], est["off_peak_usd"], est["usd_now"]) == (1.0, 0.4, 1.0)


def test_outside_the_window_a_run_is_refused_unless_forced():
    noon = datetime(2026, 12, 2, 12, 5, tzinfo=UTC)  # 13:05 Berlin
    with pytest.raises(OutsideWindow) as refused:
        check_window(noon, PRICES, BERLIN, 0.5)
    message = str(refused.value)
    assert "13:05 Europe/Berlin is on-peak" in message
    assert "22:00-06:00 Europe/Berlin" in message and "opens in 8h55m" in message
    assert "$1 on-peak ($2/h)" in message and "$0.4 off-peak ($0.8/h)" in message
    assert "--force" in message
    forced = check_window(noon, PRICES, BERLIN, 0.5, force=True)
    assert forced["allowed"] and forced["forced"] and forced["period"] == "on-peak"
    inside = check_window(datetime(2026, 12, 2, 23, 0, tzinfo=UTC), PRICES, BERLIN, 0.5)
    assert inside["allowed"] and not inside["forced"] and inside["period"] == "off-peak"
    waiting = TrainingWindow(
        enabled=True, time_zone="Europe/Berlin", start="22:00", end="06:00", outside="wait"
    )
    wait = check_window(noon, PRICES, waiting, None)
    assert not wait["allowed"] and wait["opens_at"] == "2026-12-02T22:00+01:00"
    assert "accelerator-hours unknown" in wait["message"]
    assert check_window(noon, PRICES, TrainingWindow(), 0.5)["allowed"]  # no window: always


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "monitoring.training_window.time_zone: unknown time zone"),
        ({"start": "25:00"}, "monitoring.training_window.start: expected HH:MM"),
        ({"end": "6"}, "monitoring.training_window.end: expected HH:MM"),
        ({"start": "06:00", "end": "06:00"}, "monitoring.training_window.end: equal to start"),
        ({"outside": "skip"}, "monitoring.training_window.outside: expected one of"),
        ({"max_wait_hours": 0}, "monitoring.training_window.max_wait_hours: must be > 0"),
    ],
)
def test_bad_window_params_name_the_key(window, message):
    with pytest.raises(ParamsError, match=message.replace("$", r"\$")):
        from_dict(Settings, {"training_window": window}, "monitoring")


def test_bad_retrain_params_name_the_key():
    with pytest.raises(ParamsError, match="monitoring.retrain.on_alerts: unknown alert kind 'drift'"):
        from_dict(Settings, {"retrain": {"on_alerts": ["drift"]}}, "monitoring")
    with pytest.raises(ParamsError, match="monitoring.retrain.min_new_examples: must be > 0"):
        from_dict(Settings, {"retrain": {"min_new_examples": 0}}, "monitoring")
    with pytest.raises(ParamsError, match="monitoring.prices.train_off_peak_usd_per_hour: must be >= 0"):
        from_dict(Settings, {"prices": {"train_off_peak_usd_per_hour": -1}}, "monitoring")
