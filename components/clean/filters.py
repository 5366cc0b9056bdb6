"""Record parsing and text repair of the clean stage as pure functions (no Beam).

- ``parse_line``: one raw JSONL line (bytes) -> a record ``{id, text, source, meta}`` or a reject
  reason: ``too_large``, ``invalid_utf8``, ``invalid_json``, ``not_an_object``, ``missing_id``,
  ``missing_text``, ``non_string_text``, ``empty_text``, ``invalid_unicode`` (lone surrogates outside
  the text).
- ``normalize_text``: control-character and whitespace cleanup plus Unicode normalization;
  idempotent (``normalize_text(normalize_text(t)) == normalize_text(t)``).
- ``denoise``: markup remnants, mojibake (ftfy), U+FFFD, then ``normalize_text``; idempotent too.
- ``line_key`` / ``remove_lines``: the cross-document boilerplate rule (lines seen in many documents).
- ``length_filter``: None to keep, or a drop reason: ``too_short``, ``too_long``, ``too_few_words``.
- ``text_key``: the exact-dedup key of a normalized text.

Reason strings are stable: they name the files under dropped/ and the keys of report.json. The
quality rules live in ``quality``, near-duplicates in ``dedup``, personal data in ``pii``.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

REJECT_REASONS = (
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_id",
    "missing_text",
    "non_string_text",
    "empty_text",
    "invalid_unicode",
    "duplicate_id",
    "unreadable",
    "processing_error",
)
DROP_REASONS = ("too_short", "too_long", "too_few_words", "duplicate_exact")
REPLACEMENT_REASON = "denoise:replacement_chars"

# Line breaks of every flavour become "\n" (CR LF, CR, VT, FF, NEL, LINE/PARAGRAPH SEPARATOR).
_NEWLINES = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# Removed outright: C0/C1 controls other than \t \n, DEL, zero-width space, BOM (U+FEFF inside a
# text is a zero-width no-break space), lone surrogates (not encodable as UTF-8), noncharacters
# (U+FDD0-U+FDEF, U+xFFFE/U+xFFFF: never text, and CLD2 refuses them).
_CONTROLS = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\u200b\ufeff\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    "\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff\U0010fffe\U0010ffff]"
)
# Horizontal whitespace runs (tab, space, no-break and typographic spaces) -> one space. The pattern
# leaves a lone plain space unmatched: most spaces are that, and substituting each costs 3x the time.
_WS = " \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_SPACES = re.compile(f"[{_WS[1:]}][{_WS}]*| [{_WS}]+")
_SPACE_AROUND_NEWLINE = re.compile(" \n ?|\n ")
_BLANK_LINES = re.compile("\n{3,}")


def clean_whitespace(text: str) -> str:
    """Drop control characters, unify line breaks, collapse space runs, keep at most one blank line.

    Substring checks (C speed) skip the regex passes that cannot match: in plain text most of them,
    which makes the cleanup about 3x faster on news articles.
    """
    ascii_only = text.isascii()
    if not ascii_only or "\r" in text or "\x0b" in text or "\x0c" in text:
        text = _NEWLINES.sub("\n", text)
    if not ascii_only or not text.isprintable():
        text = _CONTROLS.sub("", text)
    if not ascii_only or "  " in text or "\t" in text:
        text = _SPACES.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _SPACE_AROUND_NEWLINE.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def normalize_text(text: str, form: str = "NFC") -> str:
    """Cleanup plus Unicode normalization ``form`` (NFC, NFKC, NFD, NFKD), to a fixed point.

    NFKC can turn one character into space-led sequences (U+00A8 -> " \u0308") that the cleanup
    would change again, so both run until the normalization changes nothing more (the cleanup is
    idempotent on its own), which makes the function idempotent. One round in nearly all texts.
    """
    for _ in range(4):
        cleaned = clean_whitespace(text)
        text = unicodedata.normalize(form, cleaned)
        if text == cleaned:
            break
    return text


# --- markup remnants ------------------------------------------------------------------------------

_COMMENTS = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_SCRIPTS = re.compile(r"<(script|style|noscript)\b[^>]*>.*?(?:</\1\s*>|\Z)", re.DOTALL | re.IGNORECASE)
# Tags of HTML only (a fixed list), so "a < b" or "x<y>z" in prose stay. Block tags become a line
# break, inline tags disappear.
_BLOCK_TAGS = (
    "address|article|aside|blockquote|body|br|caption|dd|div|dl|dt|figcaption|figure|footer|form|"
    "h[1-6]|head|header|hr|html|li|main|nav|ol|p|pre|section|table|tbody|td|tfoot|th|thead|title|tr|ul"
)
_INLINE_TAGS = (
    "a|abbr|b|big|button|center|cite|code|em|font|i|iframe|img|input|ins|kbd|label|link|mark|meta|"
    "option|q|s|samp|select|small|span|strike|strong|sub|sup|textarea|time|tt|u|var|wbr"
)
_ATTRS = r"""(?:\s+[^\s<>"'/=]+(?:\s*=\s*(?:"[^"<>]*"|'[^'<>]*'|[^\s"'<>=`]+))?)*\s*/?>"""
_BLOCK_TAG = re.compile(rf"</?(?:{_BLOCK_TAGS})\b{_ATTRS}", re.IGNORECASE)
_INLINE_TAG = re.compile(rf"</?(?:{_INLINE_TAGS})\b{_ATTRS}", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _unescape(match: re.Match) -> str:
    return html.unescape(match.group())


def strip_markup(text: str) -> str:
    """Remove HTML comments, script/style blocks and tags; unescape character entities.

    Entities are unescaped to a fixed point first ("&amp;lt;" -> "<"), then tags are removed, so an
    escaped tag ("&lt;p&gt;") is treated as the tag it shows. Texts without "<" or "&" are returned
    at once.
    """
    if "&" in text:
        for _ in range(3):
            unescaped = _ENTITY.sub(_unescape, text)
            if unescaped == text:
                break
            text = unescaped
    if "<" in text:
        text = _COMMENTS.sub("", text)
        text = _SCRIPTS.sub("", text)
        text = _BLOCK_TAG.sub("\n", text)
        text = _INLINE_TAG.sub("", text)
    return text


# --- mojibake -------------------------------------------------------------------------------------

# UTF-8 read as Latin-1 / Windows-1252 turns each multi-byte character into a lead character
# U+00C2-U+00F4 followed by one of the 0x80-0xBF bytes as Latin-1 or cp1252 shows them (or U+FFFD,
# or a space for a lost no-break space). ftfy is slow on long texts (its badness regex scans all of
# it: ~3 ms for a 3 kB article), so it runs only where this pattern occurs.
_MOJIBAKE_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc"
    "\u2013\u2014\u2018-\u201a\u201c-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122\ufffd]"
    "|[\u00c2\u00c3][ \u00a0]"
)


def fix_mojibake(text: str) -> str:
    """Repair text decoded with the wrong codec ("CafÃ©" -> "Café") with ``ftfy.fix_encoding``.

    ``fix_encoding`` only undoes wrong decodings: unlike ``ftfy.fix_text`` it keeps curly quotes,
    HTML entities and full-width characters, so clean text is never changed.
    """
    if text.isascii() or not _MOJIBAKE_HINT.search(text):
        return text
    import ftfy

    return ftfy.fix_encoding(text)


# --- the whole repair -----------------------------------------------------------------------------


class DenoiseParams(Protocol):
    fix_mojibake: bool
    strip_markup: bool
    remove_replacement_chars: bool


@dataclass
class DenoiseInfo:
    """What ``denoise`` changed (first round): for counters and the document's annotation."""

    markup: bool = False
    mojibake: bool = False
    replacement_chars: int = 0


def _denoise_once(text: str, cfg: DenoiseParams, form: str, info: DenoiseInfo | None) -> str:
    if cfg.strip_markup:
        stripped = strip_markup(text)
        if info is not None and stripped != text:
            info.markup = True
        text = stripped
    if cfg.fix_mojibake:
        fixed = fix_mojibake(text)
        if info is not None and fixed != text:
            info.mojibake = True
        text = fixed
    if "\ufffd" in text:
        if info is not None:
            info.replacement_chars += text.count("\ufffd")
        if cfg.remove_replacement_chars:
            text = text.replace("\ufffd", "")
    return normalize_text(text, form)


def denoise(text: str, cfg: DenoiseParams, form: str = "NFC") -> tuple[str, DenoiseInfo]:
    """Markup remnants, mojibake, U+FFFD, controls, whitespace and Unicode form; to a fixed point.

    The steps can feed each other (an unescaped entity makes mojibake, NFKC makes a "<"), so they
    repeat until a round changes nothing: ``denoise(denoise(t)[0])[0] == denoise(t)[0]``. A second
    round only runs when the first changed the text.
    Returns the text and what the first round changed (U+FFFD counted before removal).
    """
    info = DenoiseInfo()
    out = _denoise_once(text, cfg, form, info)
    for _ in range(3):
        if out == text:
            break
        text, out = out, _denoise_once(out, cfg, form, None)
    return out, info


def replacement_ratio(n_replacement: int, text: str) -> float:
    """U+FFFD characters per character of the repaired text (0 for an empty text)."""
    return n_replacement / max(len(text), 1)


# --- boilerplate lines across documents -----------------------------------------------------------


def line_key(line: str) -> int:
    """The 64-bit key of a line for cross-document counting (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest(), "little")


def candidate_lines(text: str, max_chars: int) -> set[int]:
    """Keys of the distinct non-empty lines of ``text`` up to ``max_chars`` long (one vote per document)."""
    return {line_key(line) for line in text.split("\n") if line and len(line) <= max_chars}


def remove_lines(text: str, keys: set[int] | frozenset[int], max_chars: int) -> tuple[str, list[str]]:
    """``text`` without the lines whose key is in ``keys``; also the removed lines.

    Blank lines left doubled by a removal are collapsed again (the text stays normalized).
    """
    if not keys:
        return text, []
    kept, removed = [], []
    for line in text.split("\n"):
        if line and len(line) <= max_chars and line_key(line) in keys:
            removed.append(line)
        else:
            kept.append(line)
    if not removed:
        return text, []
    out = "\n".join(kept)
    if "\n\n\n" in out:
        out = _BLANK_LINES.sub("\n\n", out)
    return out.strip(), removed


# --- length and exact keys ------------------------------------------------------------------------


class LengthParams(Protocol):
    min_chars: int
    max_chars: int
    min_words: int


def length_filter(text: str, params: LengthParams) -> str | None:
    """None to keep ``text``, or why it is dropped (characters and words counted after cleanup)."""
    n = len(text)
    if n < params.min_chars:
        return "too_short"
    if n > params.max_chars:
        return "too_long"
    if params.min_words and len(text.split()) < params.min_words:
        return "too_few_words"
    return None


def text_key(text: str) -> str:
    """Exact-dedup key: SHA-1 of the normalized text's UTF-8 bytes (hex)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


# --- parsing --------------------------------------------------------------------------------------


def _encodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_line(raw: bytes, max_bytes: int | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` for a good JSONL line, ``(None, reason)`` for a bad one.

    The record is ``{id: str, text: str, source: str, meta: dict}``; keys other than these four are
    moved into ``meta`` (a non-object ``meta`` is kept as ``meta["meta"]``). Integer ids become
    strings. ``text`` is returned as given (normalization is a later step). A line longer than
    ``max_bytes`` is rejected as ``too_large`` before it is decoded.
    """
    if max_bytes is not None and len(raw) > max_bytes:
        return None, "too_large"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None, "invalid_json"
    if not isinstance(obj, dict):
        return None, "not_an_object"
    doc_id = obj.pop("id", None)
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        return None, "missing_id"
    text = obj.pop("text", None)
    if text is None:
        return None, "missing_text"
    if not isinstance(text, str):
        return None, "non_string_text"
    if not text.strip():
        return None, "empty_text"
    source = obj.pop("source", None)
    source = source if isinstance(source, str) else ("" if source is None else str(source))
    meta = obj.pop("meta", {})
    meta = meta if isinstance(meta, dict) else {"meta": meta}
    meta.update(obj)  # unknown top-level keys are kept, under meta
    record = {"id": doc_id, "text": text, "source": source, "meta": meta}
    # JSON may spell lone surrogates (\ud800); the text cleanup drops them, elsewhere they are fatal
    # for UTF-8 output, so such records are rejected. The check is costly: run it only when needed.
    if b"\\u" in raw and not _encodable([doc_id, source, meta]):
        return None, "invalid_unicode"
    return record, None


def reason_path(reason: str) -> str:
    """The file of a drop reason under dropped/: ``gopher_quality:word_count`` -> ``gopher_quality/word_count.jsonl``.

    Reasons hold ASCII letters, digits, ``_``, ``-`` and ``:`` only; the colon becomes a folder
    (no colons in file names, which some file systems refuse).
    """
    return reason.replace(":", "/") + ".jsonl"


def reason_of_path(relative: str) -> str:
    """Inverse of ``reason_path``."""
    return relative.removesuffix(".jsonl").replace("/", ":")


def first_of(values: Iterable[str | None]) -> str | None:
    """The first non-None value (the first rule that fires decides the reason)."""
    for v in values:
        if v is not None:
            return v
    return None
