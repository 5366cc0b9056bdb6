"""Request validation for the model server: pure functions, no web framework.

Every bad request is a ``RequestError`` with an HTTP status in the 4xx range and a message that
says what is wrong, so the server never answers a client's mistake with a 500:

- 400: the body is not JSON;
- 413: the body, a text or the batch is over its params limit (``serving`` section);
- 422: the JSON has the wrong shape or types, an empty text, text that is not valid Unicode,
  a bad request id, or a label the model does not know.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from serving.settings import Settings

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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


def parse_json(body: bytes, max_bytes: int) -> Any:
    if len(body) > max_bytes:
        raise RequestError(413, f"request body is {len(body)} bytes, over the limit of {max_bytes}")
    if not body.strip():
        raise RequestError(400, "request body is empty; send JSON")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"request body is not valid JSON: {exc}") from None


def _check_keys(payload: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise RequestError(422, f"{what} must be a JSON object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise RequestError(422, f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(allowed))})")
    return payload


def check_text(text: Any, where: str, params: Settings) -> str:
    """The text itself, or a RequestError saying why it cannot be served."""
    if not isinstance(text, str):
        raise RequestError(422, f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise RequestError(422, f"{where} is empty")
    if len(text) > params.max_text_chars:
        raise RequestError(
            413, f"{where} has {len(text)} characters, over the limit of {params.max_text_chars}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes such as "\ud800"
        raise RequestError(422, f"{where} is not valid Unicode (lone surrogate)") from None
    return text


def parse_predict(payload: Any, params: Settings) -> PredictRequest:
    """``{"text": str}`` or ``{"texts": [str, ...]}`` (1 to ``max_batch_texts`` texts)."""
    payload = _check_keys(payload, {"text", "texts"}, "request body")
    if ("text" in payload) == ("texts" in payload):
        raise RequestError(422, 'send exactly one of "text" (a string) or "texts" (a list of strings)')
    if "text" in payload:
        return PredictRequest([check_text(payload["text"], "text", params)], single=True)
    texts = payload["texts"]
    if not isinstance(texts, list):
        raise RequestError(422, f"texts must be a list of strings, got {type(texts).__name__}")
    if not texts:
        raise RequestError(422, "texts is empty")
    if len(texts) > params.max_batch_texts:
        raise RequestError(413, f"texts has {len(texts)} items, over the limit of {params.max_batch_texts}")
    return PredictRequest([check_text(t, f"texts[{i}]", params) for i, t in enumerate(texts)], single=False)


def check_request_id(value: str | None) -> str | None:
    if value is not None and not REQUEST_ID.match(value):
        raise RequestError(422, "request id must be 1-128 characters of A-Z a-z 0-9 . _ : -")
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
        if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
            raise RequestError(422, f"{where}.request_id must be a request id string")
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise RequestError(422, f"{where}.item must be an integer >= 0")
        if label not in labels:
            raise RequestError(422, f"{where}.label must be one of {list(labels)}, got {label!r}")
        out.append(Feedback(request_id, item, label))
    return out
