"""llm.qa: the cloze QA construction (Hermann et al. 2015) on the real news sample and on planted
articles; the entity rule; the frequency baseline; SQuAD exact match and token F1."""

from __future__ import annotations

import csv
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

from llm import qa
from llm.scoring import exact_match, normalize_answer, token_f1

NEWS = Path(__file__).resolve().parents[2] / "data" / "raw" / "news_articles.csv"


def _articles() -> list[dict[str, str]]:
    if not NEWS.exists():
        pytest.skip(f"{NEWS} missing (run `make samples`)")
    csv.field_size_limit(sys.maxsize)
    with open(NEWS, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sample() -> tuple[list[dict[str, str]], list[dict]]:
    articles = _articles()
    return articles, qa.build_qa(articles, qa.QAConfig())


def test_real_sample_splits_share_no_article(sample) -> None:
    _, rows = sample
    by_split = {s: {r["article_id"] for r in rows if r["split"] == s} for s in qa.SPLITS}
    assert all(by_split.values()), "every split has articles"
    assert not by_split["train"] & by_split["valid"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["valid"] & by_split["test"]
    n = sum(map(len, by_split.values()))
    # The hash split follows the fractions (10% / 10%) within a few points.
    assert 0.06 < len(by_split["test"]) / n < 0.14 and 0.06 < len(by_split["valid"]) / n < 0.14


def test_real_sample_rows_are_well_formed(sample) -> None:
    articles, rows = sample
    bodies = {a["article_id"]: a["text"] for a in articles}
    assert len(rows) > 1000
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {
            "id", "article_id", "split", "prompt", "response", "question", "answer", "passage", "candidates",
        }  # fmt: skip
        assert qa.PLACEHOLDER in r["question"]
        assert qa.occurs(r["answer"], r["passage"]), r["id"]
        assert r["answer"] in r["candidates"] and r["candidates"] == sorted(set(r["candidates"]))
        assert len(r["passage"].split()) <= qa.QAConfig().max_passage_words
        assert " ".join(bodies[r["article_id"]].split()).startswith(r["passage"])
        assert r["prompt"] == qa.format_prompt(r["passage"], r["question"])
        assert r["response"] == qa.format_response(r["answer"])
        assert qa.answer_of(r["response"]) == r["answer"]
    per_article = Counter(r["article_id"] for r in rows)
    assert max(per_article.values()) <= qa.QAConfig().max_questions_per_article


def test_construction_is_deterministic_and_order_free(sample) -> None:
    articles, rows = sample
    subset = articles[:300]
    expected = [r for r in rows if r["article_id"] in {a["article_id"] for a in subset}]
    shuffled = list(subset)
    random.Random(7).shuffle(shuffled)
    assert qa.build_qa(shuffled, qa.QAConfig()) == expected


def test_seed_and_fractions_move_the_split() -> None:
    ids = [str(i) for i in range(2000)]
    splits = Counter(qa.split_of(i, 0.2, 0.3) for i in ids)
    assert 0.25 < splits["test"] / 2000 < 0.35 and 0.15 < splits["valid"] / 2000 < 0.25
    assert [qa.split_of(i, 0.1, 0.1, 0) for i in ids] != [qa.split_of(i, 0.1, 0.1, 1) for i in ids]
    assert {qa.split_of(i, 0.0, 0.0) for i in ids} == {"train"}


BODY = (
    "Michigan billionaire Betsy DeVos was confirmed today in President Trump's cabinet, after Vice "
    "President Mike Pence cast a vote in the Senate. Tornadoes hit the Bank of England and the U.S. "
    "while tornadoes kept away from New York. On Monday, Prime Minister Theresa May met Kim Jong Un. "
    "DeVos said DeVos would serve."
)


def test_entity_rule() -> None:
    assert qa.entity_mentions(BODY) == [
        "Michigan",
        "Betsy DeVos",
        "Trump",  # the possessive ends the span; the honorific is stripped
        "Mike Pence",
        "Senate",
        "Bank of England",  # a connector joins two capitalised tokens
        "U.S.",
        "New York",
        "Theresa May",  # a month name is stripped only at the start of a span
        "Kim Jong Un",
        "DeVos",
        "DeVos",
    ]  # "Tornadoes": a capitalised common word ("tornadoes" occurs); "On Monday": stop words
    assert qa.entities("The cat sat. A dog ran. It is Paris, and London's mayor.") == ["London", "Paris"]


def test_question_entities_longest_first_and_cloze() -> None:
    found = qa.title_entities(
        "Betsy DeVos Confirmed With Pence Casting Vote on DeVos", qa.entity_mentions(BODY)
    )
    assert found == ["Betsy DeVos", "DeVos"]  # "DeVos" inside "Betsy DeVos" is not a second match
    assert qa.cloze("DeVos and DeVosian DeVos", "DeVos") == "@placeholder and DeVosian @placeholder"


def test_article_questions_keep_only_answers_in_the_passage() -> None:
    article = {
        "article_id": "7",
        "title": "Senate Backs Betsy DeVos as Kim Jong Un Watches",
        "subtitle": "",
        "text": BODY,
    }
    skipped: Counter = Counter()
    rows = qa.article_questions(article, qa.QAConfig(max_passage_words=22), skipped)
    # "Kim Jong Un" is in the body but beyond the first 22 words: no question about it.
    assert [(r["id"], r["answer"], r["question"]) for r in rows] == [
        ("qa:000007:00", "Senate", "@placeholder Backs Betsy DeVos as Kim Jong Un Watches"),
        ("qa:000007:01", "Betsy DeVos", "Senate Backs @placeholder as Kim Jong Un Watches"),
    ]
    assert skipped == {"answer_beyond_passage": 1}
    assert rows[0]["candidates"] == ["Betsy DeVos", "Michigan", "Mike Pence", "Senate", "Trump"]
    assert rows[0]["prompt"] == (
        f"Passage: {' '.join(BODY.split()[:22])}\n"
        "Question: @placeholder Backs Betsy DeVos as Kim Jong Un Watches\nAnswer:"
    )
    assert rows[0]["response"] == " Senate\n"
    capped = qa.article_questions(article, qa.QAConfig(max_questions_per_article=1), Counter())
    assert [r["answer"] for r in capped] == ["Senate"]
    assert qa.article_questions({**article, "title": "Nothing Here"}, qa.QAConfig()) == []


def test_answer_of_takes_the_first_line() -> None:
    assert qa.answer_of(" Betsy DeVos\nQuestion: more") == "Betsy DeVos"
    assert qa.answer_of("  Paris  ") == "Paris"
    assert qa.answer_of("\nParis") == ""


def test_most_frequent_candidate() -> None:
    passage = "Kim Jong Un met Trump. Kim Jong Un left. Kim said no. Trump and Trump's aides waited."
    # Trump: 3 mentions; "Kim Jong Un": 2; "Kim" alone: 1 (the "Kim" inside "Kim Jong Un" does not count).
    assert qa.most_frequent_candidate(passage, ["Kim", "Kim Jong Un", "Trump"]) == "Trump"
    assert (
        qa.most_frequent_candidate("Paris and Rome. Rome and Paris.", ["Rome", "Paris"]) == "Paris"
    )  # tie: first
    assert qa.most_frequent_candidate("nothing", ["Oslo", "Bern"]) == "Bern"  # no mention: alphabetical
    assert qa.most_frequent_candidate("x", []) == ""


@pytest.mark.parametrize(
    ("prediction", "answer", "em", "f1"),
    [
        # SQuAD v1.1 dev examples and the official script's normalisation.
        ("Denver Broncos", "Denver Broncos", 1.0, 1.0),
        ("the Denver Broncos!", "Denver Broncos", 1.0, 1.0),
        ("Denver Broncos won", "the Denver Broncos", 0.0, 0.8),
        ("Santa Clara, California", "Levi's Stadium", 0.0, 0.0),
        ("Carolina Panthers", "Panthers", 0.0, 2 / 3),
        ("the the a", "an", 1.0, 1.0),  # both normalise to nothing
    ],
)
def test_exact_match_and_token_f1(prediction: str, answer: str, em: float, f1: float) -> None:
    assert exact_match(prediction, answer) == em
    assert token_f1(prediction, answer) == pytest.approx(f1)


def test_normalize_answer() -> None:
    assert normalize_answer("  The  Quick, brown FOX. ") == "quick brown fox"
    assert normalize_answer("Levi's") == "levis"
