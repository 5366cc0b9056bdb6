"""llm.generator: a generator folder loads with its version and settings; int8 and truncation."""

from __future__ import annotations

import json
import shutil

import pytest

from llm.generator import (
    GENERATOR_FILE,
    generator_version,
    load_generator,
    read_generator_config,
    write_generator_config,
)
from tests.task_fixtures import make_generator, make_tokenized


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("generator")
    tokenized = make_tokenized(root / "tokenize")
    return make_generator(root / "generator", tokenized)


def test_the_version_follows_the_bytes_of_every_defining_file(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    assert generator_version(copy) == generator_version(folder)
    write_generator_config(copy, task="qa", max_new_tokens=9, stop=["\n"])
    assert generator_version(copy) != generator_version(folder)
    (copy / "model.json").unlink()
    with pytest.raises(FileNotFoundError, match="model.json"):
        generator_version(copy)


def test_a_bad_config_is_refused_naming_the_field(folder, tmp_path):
    copy = tmp_path / "bad"
    shutil.copytree(folder, copy)
    body = json.loads((copy / GENERATOR_FILE).read_text())
    (copy / GENERATOR_FILE).write_text(json.dumps({**body, "quantization": "int4"}))
    with pytest.raises(ValueError, match="quantization"):
        read_generator_config(copy)
    (copy / GENERATOR_FILE).write_text(json.dumps({**body, "format": "classifier"}))
    with pytest.raises(ValueError, match="format"):
        read_generator_config(copy)


def test_load_generate_and_the_int8_variant(folder):
    gen = load_generator(folder)
    assert gen.quantization == "none" and gen.version == generator_version(folder)
    params = gen.default_params()
    assert params.max_new_tokens == 8 and params.stop == ["\n"]
    texts, result = gen.generate(["good film", "a long and dull plot"])
    assert len(texts) == 2 and all(t.generation.prompt_tokens > 0 for t in texts)
    assert result.new_tokens > 0

    int8 = load_generator(folder, quantization="int8-dynamic")
    assert int8.quantization == "int8-dynamic" and int8.version != gen.version
    from llm.classifier import DynamicInt8Linear

    assert any(isinstance(m, DynamicInt8Linear) for m in int8.model.decoder.modules())
    int8_texts, _ = int8.generate(["good film", "a long and dull plot"])
    assert [len(t.generation.tokens) for t in int8_texts] and all(
        t.generation.finish_reason in ("eos", "stop", "length") for t in int8_texts
    )


def test_truncate_keeps_the_end_of_a_prompt_and_long_prompts_are_refused_without_it(folder):
    gen = load_generator(folder)
    limit = gen.max_prompt_tokens(8)
    long_prompt = " ".join(["plot"] * (limit + 40)) + " question: answer"
    (cut,) = gen.truncate([long_prompt], 8)
    assert cut.endswith("question: answer") and gen.count_tokens([cut])[0] <= limit
    assert gen.truncate(["short"], 8) == ["short"]
    with pytest.raises(ValueError, match="max_new_tokens"):
        gen.generate([long_prompt])
    texts, _ = gen.generate([long_prompt], truncate=True)
    assert texts[0].generation.prompt_tokens <= limit


def test_continuation_scores_are_the_model_log_likelihoods_whatever_the_batch(folder):
    import torch

    from llm.gpt.model import logits

    g = load_generator(folder)
    prompt = "the film was"
    conts = [" good", " a boring story about an actor", " bad", "\n"]
    batched = g.score_continuations(prompt, conts)
    alone = [g.score_continuations(prompt, [c])[0] for c in conts]
    assert batched == pytest.approx(alone, abs=1e-4)  # right padding changes no score
    head = g.tokenizer.encode(prompt).ids
    for cont, got in zip(conts, batched, strict=True):
        ids = head + g.tokenizer.encode(cont).ids
        with torch.no_grad():
            logp = torch.log_softmax(logits(g.model, torch.tensor([ids])).float()[0], dim=-1)
        want = sum(logp[t - 1, ids[t]].item() for t in range(len(head), len(ids)))
        assert got == pytest.approx(want, abs=1e-3)
    assert batched[1] < min(batched[0], batched[2])  # a longer continuation pays for every token


def test_the_greedy_next_token_outscores_every_other_continuation(folder):
    # log p(t1 t2 ...) <= log p(t1) <= log p(greedy token): whatever their length, no continuation
    # may score above the greedy one-token one.
    g = load_generator(folder)
    prompt = "a great story"
    (out,), _ = g.generate([prompt], g.default_params(max_new_tokens=1, stop=[]))
    best = g.tokenizer.decode(out.generation.tokens)
    assert g.tokenizer.encode(best).ids == out.generation.tokens
    others = sorted({g.tokenizer.decode([t]) for t in range(100, 160)} - {best})
    scores = g.score_continuations(prompt, [best, *others])
    assert scores[0] == max(scores), (best, max(zip(scores, [best, *others], strict=True)))


def test_score_continuations_refuses_what_it_cannot_score(folder):
    g = load_generator(folder)
    with pytest.raises(ValueError, match="at least one token"):
        g.score_continuations("the film", ["", " good"])
    with pytest.raises(ValueError, match="no room for the prompt"):
        g.score_continuations("the film", [" good" * g.seq_length])


def test_choose_scores_each_choice_as_the_template_writes_it(folder, tmp_path):
    g = load_generator(folder)
    prompt = "the film was"
    index, scores = g.choose(prompt, ["good", "bad", "boring"])
    assert scores == pytest.approx(
        g.score_continuations(prompt, [" good\n", " bad\n", " boring\n"]), abs=1e-5
    )
    assert scores[index] == max(scores)
    index, _ = g.choose(prompt, ["good", "good"])
    assert index == 0  # a tie goes to the first
    plain = tmp_path / "plain"
    shutil.copytree(folder, plain)
    write_generator_config(plain, task="qa", max_new_tokens=8, stop=["\n"])  # no template: verbatim
    assert load_generator(plain).choice_text("good") == "good"
    with pytest.raises(ValueError, match="choice_template"):
        write_generator_config(plain, task="qa", choice_template=" answer\n")
