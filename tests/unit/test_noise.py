"""components.common.noise: the known library messages are hidden and counted, everything else
shows, and LLM_VERBOSE=1 shows all."""

from __future__ import annotations

import logging
import warnings

import pytest

from components.common import noise


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.delenv(noise.VERBOSE_ENV, raising=False)
    monkeypatch.setattr(noise, "hidden", noise.Counter())
    beam = logging.getLogger(noise.BEAM_TYPEHINTS_LOGGER)
    saved = list(beam.filters)
    yield
    beam.filters[:] = saved


@pytest.fixture
def shown():
    """The messages that reach the display: a sink set as ``warnings.showwarning`` before the
    hiding is installed over it (restored afterwards by ``catch_warnings``)."""
    messages: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: messages.append(str(message))
        yield messages


def test_known_warnings_are_hidden_and_counted_others_shown(fresh, shown):
    assert noise.hide_library_noise()
    warnings.warn(
        "Transformer Engine and Apex are not installed. Falling back to Torch optimizers.",
        UserWarning,
        stacklevel=1,
    )
    warnings.warn("Apex is not installed. Falling back to Torch Norm", UserWarning, stacklevel=1)
    warnings.warn(
        "Please use DTensor instead and we are deprecating ShardedTensor.", FutureWarning, stacklevel=1
    )
    warnings.warn(
        "Please use DTensor instead", UserWarning, stacklevel=1
    )  # same text, another category: shown
    warnings.warn("the learning rate is huge", UserWarning, stacklevel=1)
    assert shown == ["Please use DTensor instead", "the learning rate is huge"]
    assert noise.hidden == {"Transformer Engine/Apex fallbacks": 2, "torch checkpoint deprecations": 1}
    assert noise.hidden_summary() == (
        "hid 3 known library messages (Transformer Engine/Apex fallbacks 2, torch checkpoint "
        "deprecations 1); LLM_VERBOSE=1 shows them"
    )


def test_beams_type_hint_info_lines_are_hidden_but_not_its_warnings(fresh, caplog):
    noise.hide_library_noise()
    beam = logging.getLogger(noise.BEAM_TYPEHINTS_LOGGER)
    with caplog.at_level(logging.INFO):
        beam.info('Converting string literal type hint to Any: "str"')
        beam.warning("Converting string literal type hint to Any: a warning stays")
        beam.info("something else")
    assert [r.getMessage() for r in caplog.records] == [
        "Converting string literal type hint to Any: a warning stays",
        "something else",
    ]
    assert noise.hidden == {noise.BEAM_TYPEHINTS: 1}


def test_llm_verbose_shows_everything(fresh, monkeypatch, shown):
    monkeypatch.setenv(noise.VERBOSE_ENV, "1")
    assert not noise.hide_library_noise()
    warnings.warn("Apex is not installed. Falling back to Torch Norm", UserWarning, stacklevel=1)
    assert shown == ["Apex is not installed. Falling back to Torch Norm"]
    assert noise.hidden_summary() is None
