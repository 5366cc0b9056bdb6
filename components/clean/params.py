"""Params of the clean stage (stdlib only: imported by the params loader of every stage).

Each rule set is its own nested section with an ``enabled`` flag; the defaults are the thresholds of
the paper the rules come from (cited per section), which are also the CPU demo values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.common.params import check_fraction, check_positive

SECTION = "clean"

# Runners whose SDK workers are threads or processes of the launching process, so they see its
# disk; any other runner (PortableRunner, FlinkRunner, SparkRunner, DataflowRunner ...) may run
# them on other machines.
IN_PROCESS_RUNNERS = ("FnApiRunner", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner")

PII_TYPES = ("email", "phone", "ip_address", "card_number")
OUTLIER_FEATURES = (
    "length",
    "mean_word_length",
    "symbol_ratio",
    "digit_ratio",
    "uppercase_ratio",
    "repetition",
)


def _check_non_negative(section: str, **values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ValueError(f"{section}.{name}: must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Denoise:
    """Text repair before any rule looks at the text."""

    fix_mojibake: bool = True  # repair mojibake with ftfy.fix_encoding ("CafÃ©" -> "Café") (flag)
    strip_markup: bool = True  # remove HTML tags, comments, script/style blocks; unescape entities (flag)
    remove_replacement_chars: bool = True  # delete U+FFFD left after repair (flag)
    max_replacement_ratio: float = 0.01  # more U+FFFD per character: denoise:replacement_chars (fraction)
    boilerplate_min_docs: int = 5  # a line in at least this many documents is removed (documents; 0 = off)
    boilerplate_max_chars: int = 200  # only lines up to this long count as boilerplate (characters)

    def __post_init__(self) -> None:
        s = f"{SECTION}.denoise"
        check_fraction(s, max_replacement_ratio=self.max_replacement_ratio)
        _check_non_negative(s, boilerplate_min_docs=self.boilerplate_min_docs)
        check_positive(s, boilerplate_max_chars=self.boilerplate_max_chars)
        if self.boilerplate_min_docs == 1:
            raise ValueError(f"{s}.boilerplate_min_docs: 1 would remove every line; use 0 (off) or >= 2")


@dataclass(frozen=True)
class Language:
    """Language identification with CLD2 (pycld2: the model ships inside the wheel, no download)."""

    enabled: bool = True  # drop documents whose language is not listed, as language:<code> (flag)
    languages: list[str] = field(default_factory=lambda: ["en"])  # languages kept (CLD2 codes: en, de ...)
    min_score: float = 0.5  # top language's share of the text below this: language:unknown (fraction)
    sample_chars: int = 1000  # characters from the start of the text that CLD2 reads (characters)

    def __post_init__(self) -> None:
        s = f"{SECTION}.language"
        check_fraction(s, min_score=self.min_score)
        check_positive(s, sample_chars=self.sample_chars)
        if self.enabled and not self.languages:
            raise ValueError(f"{s}.languages: must name at least one language when enabled")


@dataclass(frozen=True)
class GopherQuality:
    """Gopher quality rules: Rae et al. 2021, "Scaling Language Models", Appendix A.1.1 (p. 40)."""

    enabled: bool = True  # apply the rules; drop reason gopher_quality:<rule> (flag)
    min_words: int = 50  # fewer words: word_count (words)
    max_words: int = 100_000  # more words: word_count (words)
    min_mean_word_length: float = 3.0  # shorter mean word: mean_word_length (characters)
    max_mean_word_length: float = 10.0  # longer mean word: mean_word_length (characters)
    max_symbol_word_ratio: float = 0.1  # more "#" or "..." per word: symbol_ratio (ratio)
    max_bullet_lines: float = 0.9  # larger share of lines starting with a bullet: bullet_lines (fraction)
    max_ellipsis_lines: float = 0.3  # larger share of lines ending in an ellipsis: ellipsis_lines (fraction)
    min_alpha_words: float = 0.8  # smaller share of words with a letter: alpha_words (fraction)
    min_stop_words: int = 2  # fewer distinct stop words (the, be, to, of, and, that, have, with) (words)

    def __post_init__(self) -> None:
        s = f"{SECTION}.gopher_quality"
        check_positive(
            s,
            max_words=self.max_words,
            max_mean_word_length=self.max_mean_word_length,
            max_symbol_word_ratio=self.max_symbol_word_ratio,
        )
        _check_non_negative(
            s,
            min_words=self.min_words,
            min_mean_word_length=self.min_mean_word_length,
            min_stop_words=self.min_stop_words,
        )
        check_fraction(
            s,
            max_bullet_lines=self.max_bullet_lines,
            max_ellipsis_lines=self.max_ellipsis_lines,
            min_alpha_words=self.min_alpha_words,
        )


@dataclass(frozen=True)
class GopherRepetition:
    """Gopher repetition rules: Rae et al. 2021, Table A1 (fractions of lines, paragraphs, characters)."""

    enabled: bool = True  # apply the rules; drop reason gopher_repetition:<rule> (flag)
    dup_line_frac: float = 0.30  # share of lines that repeat an earlier line (fraction)
    dup_para_frac: float = 0.30  # share of paragraphs that repeat an earlier paragraph (fraction)
    dup_line_char_frac: float = 0.20  # share of characters in repeated lines (fraction)
    dup_para_char_frac: float = 0.20  # share of characters in repeated paragraphs (fraction)
    top_2gram: float = 0.20  # share of characters in the most frequent word 2-gram (fraction)
    top_3gram: float = 0.18  # share of characters in the most frequent word 3-gram (fraction)
    top_4gram: float = 0.16  # share of characters in the most frequent word 4-gram (fraction)
    dup_5gram: float = 0.15  # share of characters in repeated word 5-grams (fraction)
    dup_6gram: float = 0.14  # same for 6-grams (fraction)
    dup_7gram: float = 0.13  # same for 7-grams (fraction)
    dup_8gram: float = 0.12  # same for 8-grams (fraction)
    dup_9gram: float = 0.11  # same for 9-grams (fraction)
    dup_10gram: float = 0.10  # same for 10-grams (fraction)

    def __post_init__(self) -> None:
        s = f"{SECTION}.gopher_repetition"
        check_fraction(s, **{k: v for k, v in vars(self).items() if k != "enabled"})


@dataclass(frozen=True)
class C4:
    """C4 rules: Raffel et al. 2020, "Exploring the Limits of Transfer Learning", Section 2.2.

    Line rules remove lines (the text changes); document rules drop the document as c4:<rule>.
    The bad-words rule is left out: its list is a download. The terminal-punctuation line rule is
    off by default, as in FineWeb (Penedo et al. 2024, Sec. 3.3: it removed ~30% of their tokens); on
    the news sample it removes the whole body of 49% of the articles (truncated bodies, bylines in
    parentheses).
    """

    enabled: bool = True  # apply the rules (flag)
    terminal_punct_lines: bool = False  # keep only lines ending in . ! ? " ' (not "...") (flag)
    min_words_per_line: int = 3  # shorter lines are removed (words)
    max_word_length: int = 1000  # lines with a longer word are removed (characters)
    min_sentences: int = 5  # fewer sentences left after the line rules: too_few_sentences (sentences)
    remove_citations: bool = True  # remove Wikipedia markers [1], [edit], [citation needed] (flag)
    javascript_lines: bool = True  # remove lines mentioning "javascript" (flag)
    policy_lines: bool = True  # remove lines with "terms of use", "privacy policy", cookie notices (flag)
    lorem_ipsum: bool = True  # drop documents containing "lorem ipsum": lorem_ipsum (flag)
    curly_bracket: bool = True  # drop documents containing "{": curly_bracket (flag)

    def __post_init__(self) -> None:
        s = f"{SECTION}.c4"
        _check_non_negative(s, min_words_per_line=self.min_words_per_line, min_sentences=self.min_sentences)
        check_positive(s, max_word_length=self.max_word_length)


@dataclass(frozen=True)
class FineWeb:
    """FineWeb rules: Penedo et al. 2024, "The FineWeb Datasets", Section 3.5 (custom filters)."""

    enabled: bool = True  # apply the rules; drop reason fineweb:<rule> (flag)
    min_line_punct_ratio: float = 0.12  # smaller share of lines ending in punctuation: line_punct_ratio
    max_short_line_ratio: float = 0.67  # larger share of short lines: short_line_ratio (fraction)
    short_line_chars: int = 30  # a line this long or shorter is short (characters)
    max_char_dup_ratio: float = 0.1  # larger share of characters in repeated lines: char_dup_ratio (fraction)
    max_newline_word_ratio: float = 0.3  # more line breaks per word (list pages): list_ratio (ratio)

    def __post_init__(self) -> None:
        s = f"{SECTION}.fineweb"
        check_fraction(
            s,
            min_line_punct_ratio=self.min_line_punct_ratio,
            max_short_line_ratio=self.max_short_line_ratio,
            max_char_dup_ratio=self.max_char_dup_ratio,
        )
        check_positive(
            s, short_line_chars=self.short_line_chars, max_newline_word_ratio=self.max_newline_word_ratio
        )


@dataclass(frozen=True)
class Outliers:
    """Robust outliers: |x - median| > z * 1.4826 * MAD over the documents that passed the rules."""

    enabled: bool = True  # drop outliers as outlier:<feature> (flag)
    features: list[str] = field(default_factory=lambda: list(OUTLIER_FEATURES))  # checked features (names)
    z: float = 8.0  # robust z-score limit (MAD units scaled to a normal sigma)
    min_docs: int = 100  # fewer documents: statistics are not trusted and nothing is dropped (documents)
    min_scale: dict[str, float] = field(
        default_factory=lambda: dict(
            length=0.05,
            mean_word_length=0.1,
            symbol_ratio=0.002,
            digit_ratio=0.005,
            uppercase_ratio=0.01,
            repetition=0.01,
        )
    )  # floor of the robust sigma per feature, for near-constant features (feature units)

    def __post_init__(self) -> None:
        s = f"{SECTION}.outliers"
        check_positive(s, z=self.z, min_docs=self.min_docs)
        for i, name in enumerate(self.features):
            if name not in OUTLIER_FEATURES:
                raise ValueError(
                    f"{s}.features[{i}]: unknown feature {name!r}; known: {', '.join(OUTLIER_FEATURES)}"
                )
        for name, value in self.min_scale.items():
            if name not in OUTLIER_FEATURES:
                raise ValueError(
                    f"{s}.min_scale.{name}: unknown feature; known: {', '.join(OUTLIER_FEATURES)}"
                )
            if value < 0:
                raise ValueError(f"{s}.min_scale.{name}: must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Dedup:
    """Exact (SHA-1 of the normalized text) and near-duplicate (MinHash-LSH) removal.

    LSH: a pair with Jaccard similarity s becomes a candidate with probability 1 - (1 - s^rows)^bands
    (Leskovec et al., Mining of Massive Datasets, ch. 3.4); candidates are then verified with the exact
    Jaccard similarity of their shingle sets.
    """

    exact: bool = True  # drop exact duplicates as duplicate_exact (flag)
    near: bool = True  # drop near duplicates as duplicate_near (flag)
    num_perm: int = 128  # MinHash permutations (hash functions)
    bands: int = 20  # LSH bands (bands x rows <= num_perm)
    rows: int = 6  # MinHash values per band (rows)
    shingle_words: int = 5  # words per shingle (words)
    threshold: float = 0.8  # verified Jaccard similarity from which two documents are duplicates (0-1)
    bucket_all_pairs: int = 32  # larger LSH buckets: verified against their smallest id only (documents)
    seed: int = 1  # seed of the MinHash permutations (integer)

    def __post_init__(self) -> None:
        s = f"{SECTION}.dedup"
        check_positive(
            s,
            num_perm=self.num_perm,
            bands=self.bands,
            rows=self.rows,
            shingle_words=self.shingle_words,
            bucket_all_pairs=self.bucket_all_pairs,
        )
        check_fraction(s, threshold=self.threshold)
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"{s}.bands: bands x rows ({self.bands} x {self.rows}) must be <= num_perm ({self.num_perm})"
            )


@dataclass(frozen=True)
class Decontaminate:
    """Drop pretraining documents sharing a word n-gram with evaluation texts (GPT-3 style, Brown et al.
    2020, Appendix C: 13-grams; shorter evaluation texts match as a whole)."""

    ngram: int = 13  # words per n-gram (words)
    min_words: int = 8  # evaluation texts shorter than this are ignored (words)
    splits: list[str] = field(default_factory=lambda: ["valid", "test"])  # eval splits used ([] = all)

    def __post_init__(self) -> None:
        s = f"{SECTION}.decontaminate"
        check_positive(s, ngram=self.ngram, min_words=self.min_words)
        if self.min_words > self.ngram:
            raise ValueError(f"{s}.min_words: must be <= ngram ({self.ngram}), got {self.min_words!r}")


@dataclass(frozen=True)
class Pii:
    """Personal data replaced by typed placeholders (<EMAIL>, <PHONE>, <IP_ADDRESS>, <CARD_NUMBER>)."""

    enabled: bool = True  # redact (flag)
    types: list[str] = field(default_factory=lambda: list(PII_TYPES))  # kinds redacted (names)

    def __post_init__(self) -> None:
        for i, name in enumerate(self.types):
            if name not in PII_TYPES:
                raise ValueError(
                    f"{SECTION}.pii.types[{i}]: unknown type {name!r}; known: {', '.join(PII_TYPES)}"
                )


@dataclass(frozen=True)
class Report:
    samples_per_reason: int = 3  # dropped/rejected examples per reason in report.md (documents)
    sample_chars: int = 300  # characters of each example shown (characters)

    def __post_init__(self) -> None:
        _check_non_negative(f"{SECTION}.report", samples_per_reason=self.samples_per_reason)
        check_positive(f"{SECTION}.report", sample_chars=self.sample_chars)


@dataclass(frozen=True)
class Params:
    """The ``clean`` section of params.yaml. Defaults are the CPU demo values."""

    runner: str = "FnApiRunner"  # Beam runner (name: FnApiRunner in-process; FlinkRunner, DataflowRunner ...)
    pipeline_options: list[str] = field(default_factory=list)  # extra Beam flags (["--flag=value", ...])
    num_shards: int = 1  # number of documents/part-*.jsonl files (files; ids hashed to shards)
    max_record_bytes: int = 1_000_000  # longer input lines are rejected as too_large (bytes)
    normalization: Literal["NFC", "NFKC", "NFD", "NFKD"] = "NFC"  # Unicode normalization form (name)
    min_chars: int = 200  # shorter documents are dropped as too_short (characters, after cleanup)
    max_chars: int = 100_000  # longer documents are dropped as too_long (characters, after cleanup)
    min_words: int = 30  # fewer whitespace-separated words: dropped as too_few_words (words)
    # A truncated/corrupt shard, an unsupported file in the input folder or a run keeping nothing:
    # error (stop naming the file, output untouched) or quarantine (reject/list them, go on) (mode)
    on_bad_input: Literal["error", "quarantine"] = "error"
    denoise: Denoise = field(default_factory=Denoise)
    language: Language = field(default_factory=Language)
    gopher_quality: GopherQuality = field(default_factory=GopherQuality)
    gopher_repetition: GopherRepetition = field(default_factory=GopherRepetition)
    c4: C4 = field(default_factory=C4)
    fineweb: FineWeb = field(default_factory=FineWeb)
    outliers: Outliers = field(default_factory=Outliers)
    dedup: Dedup = field(default_factory=Dedup)
    decontaminate: Decontaminate = field(default_factory=Decontaminate)
    pii: Pii = field(default_factory=Pii)
    report: Report = field(default_factory=Report)

    @property
    def distributed(self) -> bool:
        """True when the Beam workers may run on other machines (any runner but the in-process
        ones): the stage's input and output must then be object-store URIs every worker reaches,
        never the launcher's local paths."""
        return self.runner.rsplit(".", 1)[-1] not in IN_PROCESS_RUNNERS

    def __post_init__(self) -> None:
        if not self.runner:
            raise ValueError(f"{SECTION}.runner: must not be empty")
        check_positive(
            SECTION,
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            num_shards=self.num_shards,
            max_record_bytes=self.max_record_bytes,
        )
        if self.min_words < 0:
            raise ValueError(f"{SECTION}.min_words: must be >= 0, got {self.min_words!r}")
        if self.max_chars < self.min_chars:
            raise ValueError(
                f"{SECTION}.max_chars: must be >= min_chars ({self.min_chars}), got {self.max_chars!r}"
            )
        for i, option in enumerate(self.pipeline_options):
            if not option.startswith("--"):
                raise ValueError(
                    f"{SECTION}.pipeline_options[{i}]: expected '--flag[=value]', got {option!r}"
                )
            if option.split("=", 1)[0] == "--runner":
                raise ValueError(f"{SECTION}.pipeline_options[{i}]: set the runner with clean.runner")
