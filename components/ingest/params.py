"""Params of the ingest stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass, field

from components.common.params import check_fraction, check_positive

SECTION = "ingest"


@dataclass(frozen=True)
class Qa:
    """Cloze QA over the news articles (Hermann et al. 2015; built by ``llm.qa``) -> qa.jsonl."""

    enabled: bool = True  # write QA rows (false: qa.jsonl is written empty) (flag)
    valid_fraction: float = 0.1  # share of articles (by hash of article_id) in the valid split (0-1)
    test_fraction: float = 0.1  # share of articles (by hash of article_id) in the test split (0-1)
    max_passage_words: int = 80  # passage = the article body's first words; the answer must be in it (words)
    max_questions_per_article: int = 2  # questions kept per article, title first then subtitle (questions)
    seed: int = 0  # seed of the article split hash (integer; same seed -> same split)

    def __post_init__(self) -> None:
        s = f"{SECTION}.qa"
        check_fraction(s, valid_fraction=self.valid_fraction, test_fraction=self.test_fraction)
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"{s}.test_fraction: valid + test fractions must be < 1, got "
                f"{self.valid_fraction + self.test_fraction:.6g}"
            )
        check_positive(
            s,
            max_passage_words=self.max_passage_words,
            max_questions_per_article=self.max_questions_per_article,
        )


@dataclass(frozen=True)
class Params:
    """The ``ingest`` section of params.yaml. Defaults are the CPU demo values."""

    text_column: str = "text"  # column/key holding the document text in generic --input files (name)
    seed: int = 0  # seed of the hash-based review split (integer; same seed -> same split)
    heldout_fraction: float = (
        0.1  # share of labelled reviews held out as the "reviews" monitoring batch (0-1)
    )
    train_fraction: float = 0.8  # share of the remaining reviews in the train split (0-1)
    valid_fraction: float = 0.1  # share of the remaining reviews in the valid split (0-1)
    test_fraction: float = 0.1  # share of the remaining reviews in the test split (0-1)
    news_title: bool = True  # prepend the article title (and subtitle) to the news text (flag)
    qa: Qa = field(default_factory=Qa)  # cloze QA over the news articles (section)

    def __post_init__(self) -> None:
        if not self.text_column:
            raise ValueError(f"{SECTION}.text_column: must not be empty")
        check_fraction(
            SECTION,
            heldout_fraction=self.heldout_fraction,
            train_fraction=self.train_fraction,
            valid_fraction=self.valid_fraction,
            test_fraction=self.test_fraction,
        )
        if self.heldout_fraction >= 1.0:
            raise ValueError(f"{SECTION}.heldout_fraction: must be < 1, got {self.heldout_fraction!r}")
        total = self.train_fraction + self.valid_fraction + self.test_fraction
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"{SECTION}.train_fraction: train + valid + test fractions must sum to 1, got {total:.6g}"
            )
