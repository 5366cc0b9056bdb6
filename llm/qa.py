"""Cloze-style question answering over news articles (Hermann et al. 2015, "Teaching Machines to
Read and Comprehend", NeurIPS), and the texts a generative model sees for it.

Construction (per article: ``article_id``, ``title``, ``subtitle``, ``text``):

1. Candidate entities are the proper-noun spans of the article body (``entities``; no NER model:
   a deterministic capitalised-span rule, below).
2. A question is the title or the subtitle with one body entity replaced by ``@placeholder``
   (every occurrence of it, so the answer is not left in the question). Body entities are looked
   for in the title/subtitle longest first, without overlap ("Betsy DeVos" before "DeVos"), so
   title case does not invent entities: only names the body itself capitalises count.
3. The passage is the body's first ``max_passage_words`` words (whitespace collapsed to one space);
   a question is kept only when its answer is still one of the passage's entities, and
   ``candidates`` are the passage's entities (sorted). The answer is the entity's surface form.
4. The split is by article: ``split_of(article_id)`` hashes the id (seeded), so every question of an
   article lands in the same split and no article is in two.

Unlike Hermann et al. the entities are not anonymised (``@entity3``): the model answers with the
name itself, and exact match / token F1 (``llm.scoring``) compare it with the answer.

The entity rule (``entities``): a span is a maximal run of tokens that each start with an upper-case
letter (A-Z or Latin-1 À-Þ; or are dotted acronyms such as "U.S."), separated by single spaces only (punctuation and line
breaks end a span); "of", "de", "van", "von", "bin", "al", "la", "le", "del", "da" join two
capitalised tokens ("Bank of England"); a possessive "'s" ends a span and is dropped; leading and
trailing stop words (articles, pronouns, prepositions, conjunctions, honorifics such as "President"
or "Mr."; days and months only at the start) are stripped; a one-word span whose lower-case form is also a word of the
article ("Tornadoes" at a sentence start, "tornadoes" later) is a capitalised common word, not a name.
Known errors: a sentence-initial common word joined by a connector makes a span ("Critics of
DeVos"); names that are also common words ("Bush" next to "bush") are lost; sentence-initial
common words that never occur in lower case ("Yesterday") and capitalised headings are kept;
spans swallow adjacent names ("Trump Tower Chicago"); titles with connectors make odd spans
("Secretary of State Rex Tillerson" -> "Secretary of State Rex Tillerson"); nicknames and
coreference ("the senator") are not linked.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.common.seed import stable_fraction

PLACEHOLDER = "@placeholder"
SPLITS = ("train", "valid", "test")

PROMPT_TEMPLATE = "Passage: {passage}\nQuestion: {question}\nAnswer:"

# Words (letters, digits, apostrophes, hyphens, &): the lower-case ones are the common-word evidence.
_LOWER = re.compile(r"(?<![\w'’&-])[a-z][\w'’&-]*")
_POSSESSIVE = re.compile(r"['’]s?$")
CONNECTORS = frozenset({"of", "de", "van", "von", "bin", "al", "la", "le", "del", "da", "du"})
STOP_WORDS = frozenset(
    """a an the this that these those there here he she it its they them their we our us i me my you
    your his her him who whom whose what which when where why how whether if while after before as
    at by for from in into on onto of off out over under up down to with without within about above
    across against along among around because but and or nor so yet not no yes all any both each
    every few many more most much some such than then though although unless until upon via also
    just only even still one two three four five six seven eight nine ten first last next
    today tonight yesterday tomorrow mr mr. mrs mrs. ms ms. dr dr. president vice sen sen. senator rep rep. gov gov. governor
    secretary prime minister former said says according""".split()  # noqa: SIM905 (a word list)
)
# Days and months: stripped at the start of a span only ("Theresa May" keeps its "May").
CALENDAR = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april may
    june july august september october november december""".split()  # noqa: SIM905
)


_CAP = r"(?:[A-Z]\.){2,}|[A-ZÀ-ÖØ-Þ][\w'’&-]*"
# A run of capitalised tokens joined by single spaces, connectors allowed between two of them.
_SPAN = re.compile(rf"(?<![\w'’&-])(?:{_CAP})(?: (?:(?:{'|'.join(sorted(CONNECTORS))}) )*(?:{_CAP}))*")


def _spans(text: str) -> Iterable[tuple[int, list[str]]]:
    """``(end offset, words)`` of the raw capitalised spans of ``text`` (before stop-word trimming);
    a possessive ("Trump's") ends a span and loses its "'s" (its pieces share the match's end)."""
    for m in _SPAN.finditer(text):
        group: list[str] = []
        for word in m.group().split(" "):
            bare = _POSSESSIVE.sub("", word) if len(word) > 2 and word[0].isupper() else word
            if bare:
                group.append(bare)
            if bare != word:
                yield m.end(), group
                group = []
        if group:
            yield m.end(), group


def _trim(words: list[str]) -> list[str]:
    while words and (words[0].lower() in STOP_WORDS or words[0].lower() in CALENDAR):
        words = words[1:]
    while words and (words[-1].lower() in STOP_WORDS or words[-1].lower() in CONNECTORS):
        words = words[:-1]
    return words


def lower_words(text: str) -> frozenset[str]:
    """The words of ``text`` that start in lower case (the evidence that a capitalised word is common)."""
    return frozenset(_LOWER.findall(text))


def entity_mentions(text: str, common: frozenset[str] | None = None) -> list[str]:
    """Every entity mention of ``text`` in order of occurrence (see the module docstring for the rule).

    ``common``: lower-case words that make a one-word span a common word (default: those of ``text``;
    pass the whole article's when ``text`` is a part of it).
    """
    return [entity for _, entity in _mentions(text, lower_words(text) if common is None else common)]


def _mentions(text: str, common: frozenset[str]) -> list[tuple[int, str]]:
    out = []
    for end, span in _spans(text):
        words = _trim(span)
        if not words:
            continue
        if len(words) == 1 and (words[0].lower() in common or len(words[0]) < 2):
            continue
        out.append((end, " ".join(words)))
    return out


def entities(text: str, common: frozenset[str] | None = None) -> list[str]:
    """The distinct entities of ``text``, sorted."""
    return sorted(set(entity_mentions(text, common)))


@functools.lru_cache(maxsize=1 << 16)
def _pattern(entity: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(entity) + r"(?!\w)")


def occurs(entity: str, text: str) -> bool:
    """True when ``entity`` occurs in ``text`` as whole words."""
    return _pattern(entity).search(text) is not None


def title_entities(sentence: str, candidates: Iterable[str]) -> list[str]:
    """The ``candidates`` found in ``sentence`` as whole words, longest first without overlap,
    returned in order of their first position in ``sentence``."""
    taken: list[tuple[int, int]] = []
    found: list[tuple[int, str]] = []
    present = {e for e in candidates if e in sentence}  # a cheap substring test before the regex
    for entity in sorted(present, key=lambda e: (-len(e), e)):
        for m in _pattern(entity).finditer(sentence):
            if all(m.end() <= s or m.start() >= e for s, e in taken):
                taken.append((m.start(), m.end()))
                found.append((m.start(), entity))
    first: dict[str, int] = {}
    for pos, entity in sorted(found):
        first.setdefault(entity, pos)
    return sorted(first, key=lambda e: (first[e], e))


def cloze(sentence: str, entity: str) -> str:
    """``sentence`` with every whole-word occurrence of ``entity`` replaced by ``@placeholder``."""
    return _pattern(entity).sub(PLACEHOLDER, sentence)


def truncate_words(text: str, max_words: int) -> str:
    """The first ``max_words`` words of ``text``, joined by single spaces."""
    return " ".join(text.split()[:max_words])


def _cut(text: str, max_words: int) -> int:
    """The end offset in ``text`` of its ``max_words``-th word (len(text) when it has fewer)."""
    words = text.split(None, max_words)
    if len(words) <= max_words:
        return len(text)
    return len(text[: len(text) - len(words[-1])].rstrip())


def format_prompt(passage: str, question: str) -> str:
    """The exact prompt text: ``Passage: ...\\nQuestion: ...\\nAnswer:`` (the answer follows)."""
    return PROMPT_TEMPLATE.format(passage=passage, question=question)


def format_response(answer: str) -> str:
    """The exact response text: a space, the answer, a newline (the generator's stop sequence)."""
    return f" {answer}\n"


def answer_of(generated_text: str) -> str:
    """The answer part of a generation: the text up to the first newline (or the end), stripped."""
    return generated_text.split("\n", 1)[0].strip()


def split_of(article_id: str, valid_fraction: float, test_fraction: float, seed: int = 0) -> str:
    """``train``, ``valid`` or ``test`` for an article, fixed by (article id, seed): u < test_fraction
    is test, u < test + valid is valid, else train (u = stable_fraction(article_id, seed))."""
    u = stable_fraction(str(article_id), seed)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


@dataclass(frozen=True)
class QAConfig:
    """How questions are built (ingest's ``ingest.qa`` params carry the same values)."""

    valid_fraction: float = 0.1  # share of articles in the valid split (0-1)
    test_fraction: float = 0.1  # share of articles in the test split (0-1)
    max_passage_words: int = 80  # passage = the body's first words (words)
    max_questions_per_article: int = 2  # questions kept per article, in title order (questions)
    seed: int = 0  # seed of the article split hash (integer)


def _key(article_id: str) -> str:
    return f"{int(article_id):06d}" if article_id.isdigit() else article_id


def article_questions(article: Mapping[str, Any], config: QAConfig, skipped: Counter | None = None):
    """The QA rows of one article (C1 fields plus ``passage``), in title-then-subtitle order."""
    skipped = Counter() if skipped is None else skipped
    article_id = str(article.get("article_id") or "").strip()
    body = (article.get("text") or "").strip()
    if not article_id or not body:
        skipped["missing_text" if article_id else "missing_id"] += 1
        return []
    mentions = _mentions(body, lower_words(body))
    body_entities = {entity for _, entity in mentions}
    passage = truncate_words(body, config.max_passage_words)
    cut = _cut(body, config.max_passage_words)
    # The passage's entities: the body's mentions that end inside it (a name cut in two is none).
    candidates = sorted({entity for end, entity in mentions if end <= cut})
    split = split_of(article_id, config.valid_fraction, config.test_fraction, config.seed)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for field in ("title", "subtitle"):
        sentence = " ".join((article.get(field) or "").split())
        for answer in title_entities(sentence, body_entities):
            if (sentence, answer) in seen:
                continue
            seen.add((sentence, answer))
            if answer not in candidates:
                skipped["answer_beyond_passage"] += 1
                continue
            if len(rows) >= config.max_questions_per_article:
                skipped["over_max_questions"] += 1
                continue
            question = cloze(sentence, answer)
            rows.append(
                {
                    "id": f"qa:{_key(article_id)}:{len(rows):02d}",
                    "article_id": article_id,
                    "split": split,
                    "prompt": format_prompt(passage, question),
                    "response": format_response(answer),
                    "question": question,
                    "answer": answer,
                    "passage": passage,
                    "candidates": candidates,
                }
            )
    if not rows:
        skipped["no_question"] += 1
    return rows


def build_qa(
    articles: Iterable[Mapping[str, Any]], config: QAConfig, skipped: Counter | None = None
) -> list[dict[str, Any]]:
    """All QA rows of ``articles`` sorted by id (an article id seen twice: its first row is kept)."""
    skipped = Counter() if skipped is None else skipped
    rows: list[dict[str, Any]] = []
    done: set[str] = set()
    for article in articles:
        article_id = str(article.get("article_id") or "").strip()
        if article_id and article_id in done:
            skipped["duplicate_id"] += 1
            continue
        done.add(article_id)
        rows += article_questions(article, config, skipped)
    return sorted(rows, key=lambda r: r["id"])


def most_frequent_candidate(passage: str, candidates: Sequence[str]) -> str:
    """The frequency baseline (Hermann et al. 2015, "maximum frequency"): the candidate with the most
    whole-word mentions in ``passage`` (longer candidates matched first, mentions do not overlap, so
    "Kim" inside "Kim Jong Un" is not counted); ties go to the earliest first mention, then the
    alphabetically first. "" for no candidates."""
    if not candidates:
        return ""
    ordered = sorted(set(candidates), key=lambda e: (-len(e), e))
    alternation = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(c) for c in ordered) + r")(?!\w)")
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for m in alternation.finditer(passage):
        counts[m.group()] += 1
        first.setdefault(m.group(), m.start())
    return min(ordered, key=lambda c: (-counts[c], first.get(c, len(passage) + 1), c))
