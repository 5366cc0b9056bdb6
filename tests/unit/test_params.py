"""The strict params loader: unknown keys, wrong types and missing sections are refused by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from components.common.params import SECTIONS, ParamsError, check_positive, from_dict, load_all, to_dict


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1  # learning rate
    steps: int = 10  # optimizer steps


@dataclass(frozen=True)
class Example:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    inner: Inner = field(default_factory=Inner)
    limit: int | None = None

    def __post_init__(self) -> None:
        check_positive("example", **{"inner.steps": self.inner.steps})


def test_defaults_and_nested_values():
    p = from_dict(Example, {"inner": {"lr": 1, "steps": 3}, "sizes": [4]}, "example")
    assert p.inner == Inner(lr=1.0, steps=3)
    assert isinstance(p.inner.lr, float)
    assert p.sizes == [4]
    assert to_dict(p)["inner"] == {"lr": 1.0, "steps": 3}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nmae": "y"}, "example.nmae: unknown key (known keys: inner, limit, mode, name, sizes)"),
        ({"inner": {"lr": "fast"}}, "example.inner.lr: expected float, got str 'fast'"),
        ({"inner": {"steps": 2.5}}, "example.inner.steps: expected int, got float 2.5"),
        ({"inner": {"steps": True}}, "example.inner.steps: expected int, got bool True"),
        ({"mode": "c"}, "example.mode: expected one of ['a', 'b'], got 'c'"),
        ({"sizes": [1, "2"]}, "example.sizes[1]: expected int, got str '2'"),
        ({"inner": {"steps": 0}}, "example.inner.steps: must be > 0, got 0"),
        ({"limit": "none"}, "example.limit: expected int, got str 'none'"),
    ],
)
def test_bad_values_are_refused_naming_the_key(data, message):
    with pytest.raises(ParamsError) as exc:
        from_dict(Example, data, "example")
    assert str(exc.value) == message


def test_struct_numbers_accepts_integral_floats_only_when_asked():
    # Kubeflow turns every number of a dict parameter into a double.
    assert from_dict(Example, {"inner": {"steps": 3.0}}, "example", struct_numbers=True).inner.steps == 3
    with pytest.raises(ParamsError, match="example.inner.steps"):
        from_dict(Example, {"inner": {"steps": 3.0}}, "example")
    with pytest.raises(ParamsError, match="example.inner.steps"):
        from_dict(Example, {"inner": {"steps": 3.5}}, "example", struct_numbers=True)


def test_repo_params_file_is_valid():
    params = load_all("params.yaml")
    assert set(params) == set(SECTIONS)


def _write(tmp_path, raw):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_missing_and_unknown_sections(tmp_path):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    del raw["finetune"]
    with pytest.raises(ParamsError, match=r"^finetune: missing section$"):
        load_all(_write(tmp_path, raw))
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["trian"] = {}
    with pytest.raises(ParamsError, match=r"^trian: unknown section"):
        load_all(_write(tmp_path, raw))


def test_server_keys_belong_to_the_serving_section(tmp_path):
    # The model server owns its settings: a server key left in the deploy stage's section is refused.
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["deploy"]["max_text_chars"] = 5000
    with pytest.raises(
        ParamsError, match=r"^deploy\.max_text_chars: unknown key \(known keys: [a-z_, ]*smoke_examples\)$"
    ):
        load_all(_write(tmp_path, raw))
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["serving"]["max_text_chars"] = 0
    with pytest.raises(ParamsError, match=r"^serving\.max_text_chars: must be > 0, got 0$"):
        load_all(_write(tmp_path, raw))
    assert load_all("params.yaml")["serving"].max_text_chars == 5000


def test_drift_thresholds_in_monitor_and_the_continuous_monitor_keys_in_monitoring(tmp_path):
    # The drift thresholds are defined once in the floor (llm.drift.DriftParams): the monitor stage's
    # params, which the continuous monitor judges with too; what only the continuous monitor uses
    # (window, schedule, prediction/latency tests, alerts, prices) is in its own section.
    from llm.drift import DriftParams
    from monitoring.settings import Settings

    params = load_all("params.yaml")
    assert type(params["monitor"]) is DriftParams and type(params["monitoring"]) is Settings
    assert params["monitoring"].window_minutes == 60 and params["monitor"].drift_share == 0.5
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["monitor"]["window_minutes"] = 60
    with pytest.raises(
        ParamsError, match=r"^monitor\.window_minutes: unknown key \(known keys: drift_share, "
    ):
        load_all(_write(tmp_path, raw))
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["monitoring"]["window_minutes"] = 0
    with pytest.raises(ParamsError, match=r"^monitoring\.window_minutes: must be > 0, got 0$"):
        load_all(_write(tmp_path, raw))
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["monitoring"]["drift_share"] = 0.5
    with pytest.raises(ParamsError, match=r"^monitoring\.drift_share: unknown key"):
        load_all(_write(tmp_path, raw))


def test_prices_live_in_monitoring_prices_only(tmp_path):
    # One price source for every USD figure: the stages record time, the monitor prices it. No
    # price key anywhere else in params.yaml, the tiny params or the hardware profiles.
    def price_keys(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else str(key)
                if any(word in str(key) for word in ("price", "usd", "cost")):
                    yield here
                yield from price_keys(value, here)

    files = [
        Path("params.yaml"),
        Path("tests/pipeline/params_tiny.yaml"),
        *Path("params/profiles").glob("*.yaml"),
    ]
    for path in files:
        keys = [k for k in price_keys(yaml.safe_load(path.read_text())) if not k.startswith("monitoring.")]
        assert keys == [], path
    assert load_all("params.yaml")["monitoring"].prices.train_usd_per_hour > 0
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["pretrain"]["price_per_accelerator_hour"] = 3.5  # the stage's old price key
    with pytest.raises(ParamsError, match=r"^pretrain\.price_per_accelerator_hour: unknown key"):
        load_all(_write(tmp_path, raw))
