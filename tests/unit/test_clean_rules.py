"""clean's pure rules (no Beam): repair, quality rule sets, language, outliers, PII, MinHash-LSH, decontamination."""

from __future__ import annotations

import random

import numpy as np
import pytest

from components.clean import dedup, filters, outliers, pii, quality
from components.clean.params import Params
from components.clean.textstats import ngram_hashes, text_stats, word_hashes
from components.common.params import ParamsError, from_dict

P = Params()

NOUNS = [
    "river",
    "garden",
    "teacher",
    "market",
    "window",
    "city",
    "forest",
    "engine",
    "letter",
    "doctor",
    "village",
    "bridge",
    "harbor",
    "student",
    "mountain",
    "island",
    "kitchen",
    "library",
    "painter",
    "farmer",
    "museum",
    "station",
    "theater",
    "factory",
    "castle",
    "valley",
    "planet",
    "ocean",
    "council",
    "journey",
    "meadow",
    "orchard",
    "harvest",
    "lantern",
    "carpet",
    "pocket",
    "ticket",
    "rocket",
    "shadow",
    "signal",
]
VERBS = [
    "watches",
    "builds",
    "carries",
    "finds",
    "follows",
    "paints",
    "opens",
    "closes",
    "visits",
    "remembers",
    "describes",
    "repairs",
]
ADJS = [
    "quiet",
    "bright",
    "ancient",
    "gentle",
    "narrow",
    "golden",
    "hidden",
    "busy",
    "careful",
    "curious",
    "distant",
    "famous",
]


ADVS = ["Later", "Often", "Today", "Slowly", "Suddenly", "Yesterday"]


def prose(seed: int, sentences: int = 10) -> str:
    """Seeded English-like prose that passes every default rule (varied templates, ~12 words each)."""
    rng = random.Random(seed)
    templates = (
        "The {a} {n} {v} the {a} {n} near the {n}.",
        "{d}, a {a} {n} {v} every {n} in the {n}.",
        "We saw that the {n} {v} a {a} {n} with the {n} of the {n}.",
        "Nobody knew why the {n} of the {a} {n} {v} so many {n}s.",
        "It is said that each {a} {n} {v} one {n} before the {n} ends.",
    )
    out = []
    for _ in range(sentences):
        t = rng.choice(templates)
        while "{" in t:
            t = (
                t.replace("{a}", rng.choice(ADJS), 1)
                .replace("{n}", rng.choice(NOUNS), 1)
                .replace("{v}", rng.choice(VERBS), 1)
                .replace("{d}", rng.choice(ADVS), 1)
            )
        out.append(t)
    return " ".join(out)


def check(text: str, rule: str):
    stats, lines = text_stats(text), quality.nonempty_lines(text)
    if rule == "gopher_quality":
        return quality.gopher_quality(text, stats, lines, P.gopher_quality)
    if rule == "gopher_repetition":
        return quality.gopher_repetition(text, stats, lines, P.gopher_repetition)
    if rule == "fineweb":
        return quality.fineweb(text, stats, lines, P.fineweb)
    raise AssertionError(rule)


GOOD = prose(1)


def test_good_prose_passes_every_rule() -> None:
    for rule in ("gopher_quality", "gopher_repetition", "fineweb"):
        assert check(GOOD, rule) is None, rule
    assert quality.c4_lines(GOOD, P.c4) == (GOOD, None, 0)
    assert quality.language_filter(*quality.detect_language(GOOD, 1000), P.language) is None


# --- denoise --------------------------------------------------------------------------------------

D = P.denoise


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "The Mona Lisa doesn\u00c3\u00a2\u00e2\u201a\u00ac\u00e2\u201e\u00a2t smile",
            "The Mona Lisa doesn\u2019t smile",
        ),
        ("\u00c3\u0153bergr\u00c3\u00b6\u00c3\u0178e", "\u00dcbergr\u00f6\u00dfe"),
        ("caf\u00c3\u00a9 au lait", "caf\u00e9 au lait"),
        ("<p>Hello <b>world</b></p><br/>Next", "Hello world\n\nNext"),
        ("a <!-- hidden --> b <script>var x = 1;</script>c", "a b c"),
        ("Fish &amp; chips &lt;3 &#8212; &nbsp;ok", "Fish & chips <3 \u2014 ok"),
        ("&amp;lt;i&amp;gt;shown&amp;lt;/i&amp;gt;", "shown"),
        ("broken \ufffd char", "broken char"),
        ("if a < b and c > d then", "if a < b and c > d then"),
        ("Curly \u201cquotes\u201d and \uff21 stay", "Curly \u201cquotes\u201d and \uff21 stay"),
    ],
)
def test_denoise_repairs(raw: str, clean: str) -> None:
    assert filters.denoise(raw, D)[0] == clean


DIRTY = [
    "\u00c3\u00a9t\u00c3\u00a9 &amp;amp; <div>x</div>\ufffd\r\n\r\n\r\ny\u00a0 z",
    "&lt;p&gt;&#x26;lt;b&#x26;gt;deep",
    "\uff1cb\uff1ebold\uff1c/b\uff1e \u00a8 \u2126",  # NFKC turns full-width brackets into a tag
    "x\x00<b\x00r>y \ud800 &#0; &#xD800;",
    "\u00e2\u20ac\u0153hi\u00e2\u20ac\ufffd there",
]


@pytest.mark.parametrize("form", ["NFC", "NFKC"])
def test_denoise_is_idempotent(form: str) -> None:
    for text in DIRTY + [GOOD]:
        once = filters.denoise(text, D, form)[0]
        assert filters.denoise(once, D, form)[0] == once, repr(text)


def test_denoise_reports_what_it_changed() -> None:
    text, info = filters.denoise("<b>caf\u00c3\u00a9</b> \ufffd\ufffd", D)
    assert (text, info.markup, info.mojibake, info.replacement_chars) == ("caf\u00e9", True, True, 2)
    assert filters.denoise(GOOD, D)[1] == filters.DenoiseInfo()


def test_boilerplate_lines_are_removed_and_text_stays_normalized() -> None:
    text = "Share this article\n\nReal content here.\n\nShare this article\n\nSubscribe now"
    keys = {filters.line_key("Share this article"), filters.line_key("Subscribe now")}
    out, removed = filters.remove_lines(text, keys, 200)
    assert out == "Real content here."
    assert removed == ["Share this article", "Share this article", "Subscribe now"]
    assert filters.candidate_lines(text, 200) == {
        filters.line_key(x) for x in ("Share this article", "Real content here.", "Subscribe now")
    }
    assert filters.candidate_lines(text, 10) == set()


def test_parse_line_rejects_oversized_records() -> None:
    raw = b'{"id": "a", "text": "' + b"x" * 100 + b'"}'
    assert filters.parse_line(raw, max_bytes=50) == (None, "too_large")
    assert filters.parse_line(raw, max_bytes=500)[1] is None


def test_reason_paths_round_trip() -> None:
    assert filters.reason_path("gopher_quality:word_count") == "gopher_quality/word_count.jsonl"
    assert filters.reason_of_path("language/de.jsonl") == "language:de"
    assert filters.reason_of_path(filters.reason_path("duplicate_near")) == "duplicate_near"


# --- Gopher, C4, FineWeb --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("only a few words here", "gopher_quality:word_count"),
        (" ".join(["a b c d e f g h"] * 20), "gopher_quality:mean_word_length"),
        (
            " ".join(["internationalization telecommunications"] * 40) + " the and",
            "gopher_quality:mean_word_length",
        ),
        (GOOD + " " + "#tag " * 40, "gopher_quality:symbol_ratio"),
        ("\n".join(f"- item {w} of the list and more" for w in NOUNS[:20]), "gopher_quality:bullet_lines"),
        (
            "\n".join(
                f"The {w} and the story of the {w} goes on and on for the whole town..." for w in NOUNS[:20]
            ),
            "gopher_quality:ellipsis_lines",
        ),
        (GOOD + " " + " ".join(str(10_000 + i) for i in range(300)), "gopher_quality:alpha_words"),
        (" ".join(f"{w} {v}" for w, v in zip(NOUNS, VERBS * 4, strict=False)), "gopher_quality:stop_words"),
    ],
)
def test_gopher_quality_reasons(text: str, reason: str) -> None:
    assert check(text, "gopher_quality") == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\n\n".join([prose(2, 2)] * 3 + [prose(3, 2)]), "gopher_repetition:dup_para_frac"),
        ("\n".join([prose(4, 1)] * 3 + [prose(5, 1), prose(6, 1)]), "gopher_repetition:dup_line_frac"),
        (
            "\n\n".join([prose(7, 6), prose(7, 6), prose(8, 2), prose(9, 2)]),
            "gopher_repetition:dup_para_char_frac",
        ),
        (prose(10, 3) + " " + "buy now " * 60, "gopher_repetition:top_2gram"),
        (prose(11, 6) + " " + prose(12, 2) + " " + prose(12, 2), "gopher_repetition:dup_5gram"),
    ],
)
def test_gopher_repetition_reasons(text: str, reason: str) -> None:
    assert check(text, "gopher_repetition") == reason


def test_repetition_fractions() -> None:
    stats = text_stats("one two three four five one two three four five")
    # the second occurrence of the 5-gram covers 5 words of 3-5 characters: 19 of 47 characters
    assert quality.dup_ngram_char_fraction(stats, 5) == pytest.approx(19 / 47)
    assert quality.dup_ngram_char_fraction(text_stats(GOOD), 10) == 0.0
    # "red fox" occurs three times: 3 x 7 characters of 28
    assert quality.top_ngram_char_fraction(text_stats("red fox red fox red fox runs"), 2) == pytest.approx(
        21 / 28
    )


def test_c4_line_rules_edit_the_text() -> None:
    text = "\n".join(
        [
            "Menu",  # too few words
            "Please enable JavaScript to view the comments below.",
            "Read our privacy policy and terms of use here.",
            "A sentence with a citation[1] inside it stays here.",
            GOOD,
        ]
    )
    out, reason, removed = quality.c4_lines(text, P.c4)
    assert reason is None and removed == 3
    assert out == "A sentence with a citation inside it stays here.\n" + GOOD


def test_c4_terminal_punctuation_rule_when_enabled() -> None:
    cfg = from_dict(type(P.c4), {"terminal_punct_lines": True}, "clean.c4")
    out, reason, removed = quality.c4_lines("A headline without a full stop\n" + GOOD, cfg)
    assert (out, reason, removed) == (GOOD, None, 1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (GOOD + " Lorem ipsum dolor sit amet.", "c4:lorem_ipsum"),
        (GOOD + " function f() { return 1; }", "c4:curly_bracket"),
        ("One sentence only here. And a second one.", "c4:too_few_sentences"),
    ],
)
def test_c4_document_reasons(text: str, reason: str) -> None:
    assert quality.c4_lines(text, P.c4)[1] == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "\n".join(f"word list entry number {i} without an end" for i in range(12)),
            "fineweb:line_punct_ratio",
        ),
        ("\n".join(["Short line.", "Tiny one.", "Small.", GOOD]), "fineweb:short_line_ratio"),
        ("\n".join([prose(13, 2), prose(13, 2), prose(14, 8)]), "fineweb:char_dup_ratio"),
        (
            "\n".join(
                f"{a.title()}{b}{c} {c}{a}ness." for a, b, c in zip(NOUNS, NOUNS[1:], NOUNS[2:], strict=False)
            ),
            "fineweb:list_ratio",
        ),
    ],
)
def test_fineweb_reasons(text: str, reason: str) -> None:
    cfg = from_dict(type(P.fineweb), {"max_short_line_ratio": 0.7}, "clean.fineweb")
    stats, lines = text_stats(text), quality.nonempty_lines(text)
    assert quality.fineweb(text, stats, lines, cfg) == reason


def test_language_identification() -> None:
    german = (
        "Der schnelle braune Fuchs springt über den faulen Hund. Die Stadt ist im Winter sehr kalt, "
        "und die Menschen bleiben gern zu Hause, wo sie lesen und Tee trinken."
    )
    code, score = quality.detect_language(german, 1000)
    assert code == "de" and score > 0.9
    assert quality.language_filter(code, score, P.language) == "language:de"
    assert (
        quality.language_filter(*quality.detect_language("xq zzv 1234", 1000), P.language)
        == "language:unknown"
    )
    assert quality.language_filter("en", 0.3, P.language) == "language:unknown"
    assert quality.detect_language("ok \x00\x7f text", 1000)[0] in ("en", "unknown")  # never raises


# --- text statistics ------------------------------------------------------------------------------


def test_text_stats_counts() -> None:
    s = text_stats("Hello, World! It's 2024 \u2014 caf\u00e9 #tag ... $5")
    assert s.n_words == 8  # hello world it s 2024 café tag 5
    assert (s.uppercase, s.digits, s.symbols) == (3, 5, 1)  # symbols: Unicode S* ("$"), not punctuation
    assert s.alpha_tokens == 5 and s.n_tokens == 9
    assert word_hashes("Hello hello HELLO")[0].tolist() == [word_hashes("hello")[0][0]] * 3


# --- outliers -------------------------------------------------------------------------------------


def test_robust_limits_and_order_free_merge() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0.05, 0.01, 500).clip(0, 1).tolist()
    parts = [{}, {}]
    for i, v in enumerate(values):
        outliers.add(parts[i % 2], {"digit_ratio": v})
    merged = outliers.merge(parts)
    assert merged == outliers.merge(reversed(parts))
    cfg = from_dict(
        type(P.outliers), {"features": ["digit_ratio"], "z": 5, "min_docs": 100}, "clean.outliers"
    )
    lim = outliers.limits(merged, 500, cfg)
    med, mad = lim["features"]["digit_ratio"]["median"], lim["features"]["digit_ratio"]["mad"]
    assert med == pytest.approx(np.median(values), abs=2e-4)
    assert 1.4826 * mad == pytest.approx(0.01, rel=0.15)
    assert outliers.outlier_reason({"digit_ratio": 0.05}, lim) is None
    assert outliers.outlier_reason({"digit_ratio": 0.2}, lim) == "outlier:digit_ratio"
    assert (
        outliers.outlier_reason({"digit_ratio": 0.2}, outliers.limits(merged, 50, cfg)) is None
    )  # too few docs


# --- PII ------------------------------------------------------------------------------------------


def test_pii_placeholders() -> None:
    text = (
        "Write to jane.doe@example.org or call (202) 555-0143 or +44 20 7946 0958. "
        "Card 4111 1111 1111 1111, server 192.168.0.12 and 2001:db8::ff00:42:8329."
    )
    out, counts = pii.redact(text)
    assert out == (
        "Write to <EMAIL> or call <PHONE> or <PHONE>. Card <CARD_NUMBER>, server <IP_ADDRESS> and <IP_ADDRESS>."
    )
    assert counts == {"email": 1, "card_number": 1, "ip_address": 2, "phone": 2}


@pytest.mark.parametrize(
    "text",
    [
        "In 2017 the vote was 50-50 and 12-11; $1,000,000 was raised by 8,336,817 people.",
        "ISBN 978-3-16-148410-0, order 4111 1111 1111 1112 (bad checksum), version 3.11.7, at 12:30:45.",
        "Call 555-0143 (no area code), or see 999.1.1.1.",
    ],
)
def test_pii_leaves_numbers_that_are_not_personal(text: str) -> None:
    assert pii.redact(text)[0] == text


def test_pii_types_from_params() -> None:
    out, counts = pii.redact("a@b.co (202) 555-0143", ["email"])
    assert (out, counts) == ("<EMAIL> (202) 555-0143", {"email": 1})


# --- MinHash-LSH and clusters ---------------------------------------------------------------------


def test_minhash_estimates_jaccard() -> None:
    a, b = dedup.permutations(256, 1)
    words = GOOD.split()
    edited = " ".join(words[:60] + ["inserted", "words", "here"] + words[60:])
    x, y = dedup.text_shingles(GOOD, 5), dedup.text_shingles(edited, 5)
    exact = dedup.jaccard(x, y)
    sx, sy = dedup.signature(x, a, b), dedup.signature(y, a, b)
    assert 0.8 < exact < 1.0
    assert float(np.mean(sx == sy)) == pytest.approx(exact, abs=0.08)
    assert dedup.jaccard(x, dedup.text_shingles(prose(99), 5)) < 0.2
    # identical texts share every band; unrelated texts share none
    assert dedup.band_keys(sx, 20, 6) == dedup.band_keys(dedup.signature(x, a, b), 20, 6)
    assert not set(dedup.band_keys(sx, 20, 6)) & set(
        dedup.band_keys(dedup.signature(dedup.text_shingles(prose(98), 5), a, b), 20, 6)
    )


def test_short_texts_have_one_shingle() -> None:
    assert dedup.text_shingles("two words", 5).size == 1
    assert dedup.text_shingles("", 5).size == 0


def test_bucket_pairs_all_or_star() -> None:
    assert list(dedup.bucket_pairs(["c", "a", "b", "a"], 32)) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert list(dedup.bucket_pairs(["d", "c", "a", "b"], 3)) == [("a", "b"), ("a", "c"), ("a", "d")]


def test_clusters_are_stars_around_the_best_connected_document() -> None:
    edges = [("d", "e"), ("a", "b"), ("b", "c")]
    lengths = {"a": 100, "b": 300, "c": 300, "d": 50, "e": 50}
    expected = {"a": ("b", 3), "b": ("b", 3), "c": ("b", 3), "d": ("d", 2), "e": ("d", 2)}
    assert dedup.clusters(edges, lengths) == expected
    assert dedup.clusters(reversed(edges), lengths) == expected
    # a chain a~b~c~d: b (two neighbours, smaller id than c) keeps a and c; d, not a near-duplicate
    # of b, stays a representative of its own (it is kept)
    chain = dedup.clusters([("a", "b"), ("b", "c"), ("c", "d")], dict.fromkeys("abcd", 10))
    assert chain == {"a": ("b", 3), "b": ("b", 3), "c": ("b", 3), "d": ("d", 1)}
    # equal degree: the longest document represents
    assert dedup.clusters([("x", "y")], {"x": 5, "y": 9})["x"] == ("y", 2)


def test_decontamination_ngrams() -> None:
    review = "a gripping and beautifully acted film that never loses its nerve until the final scene"
    short = "simply the worst movie of the year"  # 7 words: ignored (min_words 8)
    rows = dedup.eval_ngrams(review, 13, 8) + dedup.eval_ngrams(short, 13, 8)
    index = dedup.eval_index(rows, 8)
    assert len(rows) == 3 and set(index["grams"]) == {13}
    leaked = (
        GOOD
        + " Critics said: a gripping and beautifully acted film that never loses its nerve until the final..."
    )
    assert dedup.contaminated(word_hashes(leaked)[0], index)
    assert not dedup.contaminated(word_hashes(GOOD + " " + short)[0], index)
    eight = dedup.eval_index(dedup.eval_ngrams("one two three four five six seven eight", 13, 8), 8)
    assert set(eight["grams"]) == {8}
    assert dedup.contaminated(word_hashes("x one two three four five six seven eight y")[0], eight)


def test_ngram_hashes_match_across_texts() -> None:
    a = ngram_hashes(word_hashes("the quick brown fox")[0], 2)
    b = ngram_hashes(word_hashes("THE quick, brown!")[0], 2)
    assert a[:2].tolist() == b.tolist()


# --- params ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dedup": {"bands": 30, "rows": 6}}, "clean.dedup.bands"),
        ({"dedup": {"threshold": 1.5}}, "clean.dedup.threshold"),
        ({"outliers": {"features": ["nope"]}}, r"clean.outliers.features\[0\]"),
        ({"pii": {"types": ["ssn"]}}, r"clean.pii.types\[0\]"),
        ({"gopher_quality": {"min_alpha_words": 2}}, "clean.gopher_quality.min_alpha_words"),
        ({"denoise": {"boilerplate_min_docs": 1}}, "clean.denoise.boilerplate_min_docs"),
        ({"decontaminate": {"min_words": 20}}, "clean.decontaminate.min_words"),
        ({"language": {"languag": ["en"]}}, "clean.language.languag"),
        ({"max_record_bytes": 0}, "clean.max_record_bytes"),
    ],
)
def test_bad_nested_params_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=f"^{key}"):
        from_dict(Params, data, "clean")
