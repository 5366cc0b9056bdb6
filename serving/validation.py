"""Request validation for the model server: pure functions, no web framework.

Every bad request is a ``RequestError`` with an HTTP status in the 4xx range and a message that
says what is wrong, so the server never answers a client's mistake with a 500:

- 400: the body is not JSON: empty, not UTF-8 (or starting with a byte order mark: RFC 8259 says
  networked JSON is UTF-8 without one), not parseable, ``NaN``/``Infinity``, a key twice in one
  object, nested deeper than ``serving.max_json_depth``, or a number over ``MAX_NUMBER_CHARS``;
- 404 / 409 (the app, on ``/feedback``): a request id the server does not hold, a label that
  contradicts the one already given;
- 413: the body, a text or the batch is over its params limit (``serving`` section);
- 415: a content type other than JSON;
- 422: the JSON has the wrong shape or types, an empty text or one with nothing visible in it
  (only whitespace or control characters), a NUL character, text that is not valid Unicode,
  a bad request id, or a label the model does not know.

The JSON checks run before (depth) or inside (numbers, keys) the parser, so a hostile body never
reaches Python's recursion limit or its 4,300-digit limit on ``int()``: both would be a 500.
"""

from __future__ import annotations

import json
import re
import unicodedata
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from serving.settings import Settings

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # whole string (fullmatch): no trailing newline
REQUEST_ID_RULE = "a request id must be 1-128 characters of A-Z a-z 0-9 . _ : -"
# Longest number literal accepted (characters). Our only number is an item index; Python's int()
# refuses more than 4,300 digits with a ValueError, and converting long digit strings is superlinear.
MAX_NUMBER_CHARS = 100
MAX_SHOWN_CHARS = 60  # longest client value quoted back in an error message (characters)

# A JSON string literal (escapes included), or an unterminated one up to the end of the body: every
# quote starts a match, so removing them all is one linear pass, whatever the body.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*\\?(?:"|\Z)', re.S)
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[{]}")
# Characters that show nothing: controls, format characters (zero-width, BOM), separators.
_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_JSON_TYPES = ("application/json",)


class RequestError(Exception):
    """A client error: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PredictRequest:
    texts: list[str]
    single: bool  # the client sent {"text": ...}; the answer is not a list


@dataclass(frozen=True)
class Feedback:
    request_id: str
    item: int
    label: str


def shown(value: Any) -> str:
    """``repr(value)``, cut to ``MAX_SHOWN_CHARS`` (error messages never echo a huge value)."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 3] + "..."


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays/objects in ``body`` (0 for a scalar), brackets in strings ignored.

    Linear in the body and never recursive; meant to run before the parser on bytes that may not
    even be JSON (for those it measures the bracket nesting outside anything quoted).
    """
    steps = _STRING.sub(b"", body).translate(_OPEN_CLOSE, _NOT_BRACKET)
    return max(accumulate(array("b", steps)), default=0)


def _number(kind: type) -> Any:
    def parse(literal: str) -> Any:
        if len(literal) > MAX_NUMBER_CHARS:
            raise RequestError(
                400,
                f"request body has a number of {len(literal)} characters, over the limit of {MAX_NUMBER_CHARS}",
            )
        return kind(literal)

    return parse


def _no_constants(name: str) -> Any:
    raise RequestError(400, f"request body is not valid JSON: {name} is not a JSON value")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise RequestError(400, f"request body has the key {shown(key)} twice in one object")
            seen.add(key)
    return out


def check_content_type(value: str | None) -> None:
    """JSON or nothing (a client that sends no content type is taken at its body's word); 415 else."""
    if value is None:
        return
    media, *options = (part.strip().lower() for part in value.split(";"))
    if media not in _JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestError(415, f"content-type must be application/json, got {shown(value)}")
    for option in options:
        name, _, charset = option.partition("=")
        if name.strip() == "charset" and charset.strip().strip('"') not in ("utf-8", "utf8"):
            raise RequestError(415, f"request body must be UTF-8, content-type says {shown(value)}")


def parse_json(body: bytes, max_bytes: int, max_depth: int = Settings.max_json_depth) -> Any:
    """The JSON value of ``body``, or a RequestError (400, or 413 over ``max_bytes``).

    ``max_depth``: deepest nesting of arrays and objects accepted (levels); checked before parsing.
    """
    if len(body) > max_bytes:
        raise RequestError(413, f"request body is {len(body)} bytes, over the limit of {max_bytes}")
    if body.startswith(b"\xef\xbb\xbf"):
        raise RequestError(400, "request body starts with a byte order mark; send UTF-8 without one")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            400, f"request body is not valid UTF-8 (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    if not text.strip():
        raise RequestError(400, "request body is empty; send JSON")
    # Cheap first: a body with few brackets cannot nest deeper than their count.
    if body.count(b"[") + body.count(b"{") > max_depth and (depth := json_depth(body)) > max_depth:
        raise RequestError(400, f"request body nests {depth} levels deep, over the limit of {max_depth}")
    try:
        return json.loads(
            text,
            parse_int=_number(int),
            parse_float=_number(float),
            parse_constant=_no_constants,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # cannot happen under max_depth; kept so that it never becomes a 500
        raise RequestError(400, "request body nests too deep") from None


def _check_keys(payload: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise RequestError(422, f"{what} must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise RequestError(422, f"unknown field {shown(unknown[0])} (fields: {', '.join(sorted(allowed))})")
    return payload


def check_text(text: Any, where: str, params: Settings) -> str:
    """The text itself, or a RequestError naming ``where`` and saying why it cannot be served.

    Refused (422): empty or whitespace only; nothing visible (only control, format or separator
    characters, such as a run of NULs); any NUL (no natural text has one, and it truncates text in
    C-string tools downstream of the log); lone surrogates. Over ``max_text_chars``: 413.
    """
    if not isinstance(text, str):
        raise RequestError(422, f"{where} must be a string, got {type(text).__name__}")
    if len(text) > params.max_text_chars:
        raise RequestError(
            413, f"{where} has {len(text)} characters, over the limit of {params.max_text_chars}"
        )
    if not text.strip():
        raise RequestError(422, f"{where} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from JSON escapes such as "\ud800"
        raise RequestError(422, f"{where} is not valid Unicode (lone surrogate at {exc.start})") from None
    if all(unicodedata.category(c) in _INVISIBLE for c in text):
        raise RequestError(422, f"{where} has nothing visible (only whitespace or control characters)")
    if "\0" in text:
        raise RequestError(422, f"{where} contains a NUL character (at {text.index(chr(0))})")
    return text


def check_texts(raw: Any, where: str, limit: int, params: Settings) -> list[str]:
    """A list of 1 to ``limit`` texts, each checked by ``check_text`` (named ``where[i]``)."""
    if not isinstance(raw, list):
        raise RequestError(422, f"{where} must be a list of strings, got {type(raw).__name__}")
    if not raw:
        raise RequestError(422, f"{where} is empty")
    if len(raw) > limit:
        raise RequestError(413, f"{where} has {len(raw)} items, over the limit of {limit}")
    return [check_text(t, f"{where}[{i}]", params) for i, t in enumerate(raw)]


def parse_predict(payload: Any, params: Settings) -> PredictRequest:
    """``{"text": str}`` or ``{"texts": [str, ...]}`` (1 to ``max_batch_texts`` texts)."""
    payload = _check_keys(payload, {"text", "texts"}, "request body")
    if ("text" in payload) == ("texts" in payload):
        raise RequestError(422, 'send exactly one of "text" (a string) or "texts" (a list of strings)')
    if "text" in payload:
        return PredictRequest([check_text(payload["text"], "text", params)], single=True)
    return PredictRequest(
        check_texts(payload["texts"], "texts", params.max_batch_texts, params), single=False
    )


def check_request_id(value: str | None) -> str | None:
    if value is not None and not REQUEST_ID.fullmatch(value):
        raise RequestError(422, REQUEST_ID_RULE)
    return value


def parse_feedback(payload: Any, labels: Sequence[str], max_items: int) -> list[Feedback]:
    """One ``{"request_id", "label"[, "item"]}`` object or a list of them (at most ``max_items``)."""
    items = payload if isinstance(payload, list) else [payload]
    if not items:
        raise RequestError(422, "no labels given")
    if len(items) > max_items:
        raise RequestError(413, f"{len(items)} labels, over the limit of {max_items}")
    out = []
    for i, raw in enumerate(items):
        where = f"labels[{i}]" if isinstance(payload, list) else "body"
        record = _check_keys(raw, {"request_id", "item", "label"}, where)
        request_id, label, item = record.get("request_id"), record.get("label"), record.get("item", 0)
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise RequestError(422, f"{where}.request_id must be a request id string")
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise RequestError(422, f"{where}.item must be an integer >= 0")
        if label not in labels:
            raise RequestError(422, f"{where}.label must be one of {list(labels)}, got {shown(label)}")
        out.append(Feedback(request_id, item, label))
    return out


GENERATE_FIELDS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop")
MAX_SEED = 2**32 - 1  # largest seed accepted (torch seeds take 64 bits; seed + item must stay in range)
# Sampling temperatures accepted besides 0 (greedy): fp32 logits divided by a smaller one overflow to
# inf (a NaN softmax), and a larger one rounds to inf in fp32; both would fail inside the decode.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0
# Smallest top_p accepted: the nucleus is cut in fp32, where a top_p below ~1e-45 is 0 and keeps no token.
MIN_TOP_P = 1e-6


@dataclass(frozen=True)
class GenerateRequest:
    prompts: list[str]
    single: bool  # the client sent {"prompt": ...}
    overrides: dict[str, Any]  # decoding fields given (GenerateParams' names), checked by GenerateParams
    choices: list[str] | None = None  # answer with the most likely of these instead of decoding


def parse_choices(raw: Any, params: Settings) -> list[str]:
    """``choices``: 1 to ``max_generate_prompts`` distinct non-blank strings within the text limit."""
    choices = check_texts(raw, "choices", params.max_generate_prompts, params)
    if len(set(choices)) != len(choices):
        raise RequestError(422, "choices has repeated items")
    return choices


def parse_generate(payload: Any, params: Settings) -> GenerateRequest:
    """``{"prompt": str}`` or ``{"prompts": [str, ...]}`` (1 to ``max_generate_prompts``), plus the
    optional decoding fields ``GENERATE_FIELDS``. Shapes and limits here; the values' own rules
    (types, temperature >= 0, ...) are GenerateParams' (the app maps its ValueError to 422)."""
    payload = _check_keys(payload, {"prompt", "prompts", "choices", *GENERATE_FIELDS}, "request body")
    if ("prompt" in payload) == ("prompts" in payload):
        raise RequestError(422, 'send exactly one of "prompt" (a string) or "prompts" (a list of strings)')
    if "prompt" in payload:
        prompts, single = [check_text(payload["prompt"], "prompt", params)], True
    else:
        prompts, single = (
            check_texts(payload["prompts"], "prompts", params.max_generate_prompts, params),
            False,
        )
    overrides = {k: payload[k] for k in GENERATE_FIELDS if k in payload}
    if "choices" in payload:
        if overrides:
            raise RequestError(
                422,
                f"choices picks the most likely choice: decoding fields do not apply, got {sorted(overrides)}",
            )
        return GenerateRequest(prompts, single, {}, parse_choices(payload["choices"], params))
    if "stop" in overrides:
        stop = overrides["stop"]
        if not isinstance(stop, list):
            raise RequestError(422, f"stop must be a list of strings, got {type(stop).__name__}")
        if len(stop) > params.max_generate_prompts:
            raise RequestError(
                413, f"stop has {len(stop)} items, over the limit of {params.max_generate_prompts}"
            )
        for i, s in enumerate(stop):
            if not isinstance(s, str) or not s:
                raise RequestError(422, f"stop[{i}] must be a non-empty string, got {shown(s)}")
            if len(s) > params.max_text_chars:
                raise RequestError(
                    413, f"stop[{i}] has {len(s)} characters, over the limit of {params.max_text_chars}"
                )
    max_new = overrides.get("max_new_tokens")
    if isinstance(max_new, int) and not isinstance(max_new, bool) and max_new > params.max_new_tokens_cap:
        raise RequestError(422, f"max_new_tokens is {max_new}, over the limit of {params.max_new_tokens_cap}")
    temperature = overrides.get("temperature")
    if (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and temperature > 0
        and not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE
    ):
        raise RequestError(
            422,
            f"temperature must be 0 (greedy) or within [{MIN_TEMPERATURE}, {MAX_TEMPERATURE}], got {shown(temperature)}",
        )
    top_p = overrides.get("top_p")
    if isinstance(top_p, int | float) and not isinstance(top_p, bool) and 0 < top_p < MIN_TOP_P:
        raise RequestError(422, f"top_p must be within [{MIN_TOP_P}, 1], got {shown(top_p)}")
    seed = overrides.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed > MAX_SEED:
        raise RequestError(422, f"seed is {seed}, over the limit of {MAX_SEED}")
    return GenerateRequest(prompts, single, overrides)
