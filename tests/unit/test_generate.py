"""Generation on the megatron GPT (llm.gpt.generate): the key/value cache gives the uncached
tokens and never recomputes the prefix, sampling is reproducible by seed, a batch of prompts of
different lengths gives each prompt's own tokens, stops and limits are honoured and reported, and
bad settings are refused naming the key. Tiny random-initialised models (untied output layer, so
greedy decoding does not just repeat the last token)."""

from __future__ import annotations

import pytest
import torch

from components.common.params import ParamsError, from_dict
from llm.gpt import GPTShape, build_gpt, megatron_runtime
from llm.gpt.generate import GenerateParams, filter_logits, generate, generate_text

SHAPE = GPTShape(
    vocab_size=384,
    seq_length=48,
    num_layers=2,
    hidden_size=32,
    num_attention_heads=4,
    ffn_hidden_size=64,
    tie_embeddings=False,
)
PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]]
GREEDY = GenerateParams(max_new_tokens=20)
SAMPLED = GenerateParams(max_new_tokens=20, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def runtime():
    with megatron_runtime(seed=3):
        yield


@pytest.fixture(scope="module")
def model(runtime):
    return build_gpt(SHAPE)


@pytest.fixture(scope="module")
def rope_model(runtime):
    return build_gpt(GPTShape(**{**SHAPE.to_dict(), "position_embedding_type": "rope"}))


def _tokens(result) -> list[list[int]]:
    return [g.tokens for g in result.generations]


@pytest.mark.parametrize("which", ["model", "rope_model"])
def test_cached_greedy_equals_uncached_greedy(which, request):
    m = request.getfixturevalue(which)
    cached = generate(m, PROMPTS, GREEDY)
    uncached = generate(m, PROMPTS, GREEDY, use_cache=False)
    assert _tokens(cached) == _tokens(uncached)
    # Not a degenerate model: the greedy continuations vary.
    assert all(len(set(t)) > 3 for t in _tokens(cached))
    assert [g.finish_reason for g in cached.generations] == ["length"] * 3


def test_the_cache_feeds_the_prefix_once(model):
    seen: list[int] = []
    hook = model.embedding.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        generate(model, [PROMPTS[0]], GenerateParams(max_new_tokens=4))
        cached, seen[:] = list(seen), []
        generate(model, [PROMPTS[0]], GenerateParams(max_new_tokens=4), use_cache=False)
        uncached = list(seen)
    finally:
        hook.remove()
    # Prefill the 5 prompt tokens, then one token per step; the reference re-reads the sequence.
    assert cached == [5, 1, 1, 1]
    assert uncached == [5, 6, 7, 8]


def test_a_batch_of_different_lengths_gives_each_prompt_its_own_tokens(model):
    batch = generate(model, PROMPTS, GREEDY)
    alone = [generate(model, [p], GREEDY).generations[0].tokens for p in PROMPTS]
    assert _tokens(batch) == alone
    assert [g.prompt_tokens for g in batch.generations] == [5, 2, 11]
    # Sampled too: prompt i draws from seed + i, in a batch or alone.
    batch = generate(model, PROMPTS, SAMPLED)
    alone = [
        generate(model, [p], SAMPLED, seeds=[SAMPLED.seed + i]).generations[0].tokens
        for i, p in enumerate(PROMPTS)
    ]
    assert _tokens(batch) == alone
    # The uncached reference pads the same way.
    assert _tokens(generate(model, PROMPTS, GREEDY, use_cache=False)) == _tokens(
        generate(model, PROMPTS, GREEDY)
    )


def test_sampling_is_reproducible_by_seed_and_ignores_the_global_rng(model):
    torch.manual_seed(0)
    first = _tokens(generate(model, PROMPTS, SAMPLED))
    torch.manual_seed(123)
    torch.rand(10)
    assert _tokens(generate(model, PROMPTS, SAMPLED)) == first
    assert _tokens(generate(model, PROMPTS, SAMPLED, use_cache=False)) == first
    other = _tokens(generate(model, PROMPTS, GenerateParams(max_new_tokens=20, temperature=1.0, seed=8)))
    assert other != first
    assert first != _tokens(generate(model, PROMPTS, GREEDY))


def test_top_k_1_and_a_tiny_nucleus_are_greedy(model):
    greedy = _tokens(generate(model, PROMPTS, GREEDY))
    assert (
        _tokens(generate(model, PROMPTS, GenerateParams(max_new_tokens=20, temperature=1.5, top_k=1, seed=3)))
        == greedy
    )
    assert (
        _tokens(
            generate(model, PROMPTS, GenerateParams(max_new_tokens=20, temperature=1.5, top_p=1e-6, seed=3))
        )
        == greedy
    )


def test_filter_logits_keeps_the_top_k_and_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.05, 0.3, 0.15]]))
    kept = lambda x: torch.isfinite(x)[0].tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, False, True, False]
    # 0.5 < 0.7: the nucleus needs 0.3 too (0.8 >= 0.7), and nothing more.
    assert kept(filter_logits(logits, top_p=0.7)) == [True, False, True, False]
    assert kept(filter_logits(logits, top_p=0.81)) == [True, False, True, True]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False]


def test_max_new_tokens_eos_and_stop_token_sequences(model):
    full = generate(model, [PROMPTS[0]], GREEDY).generations[0].tokens
    short = generate(model, PROMPTS, GenerateParams(max_new_tokens=3))
    assert [len(t) for t in _tokens(short)] == [3, 3, 3]
    assert short.generations[0].tokens == full[:3]
    # eos: generation ends there, the end token is not returned.
    eos = full[6]
    g = generate(model, [PROMPTS[0]], GREEDY, eos_id=eos).generations[0]
    assert (g.tokens, g.finish_reason, g.stop) == (full[: full.index(eos)], "eos", None)
    # A token-id stop sequence: the tokens up to its first occurrence, the sequence included.
    stop = tuple(full[8:10])
    end = next(i + 2 for i in range(len(full) - 1) if tuple(full[i : i + 2]) == stop)
    g = generate(model, [PROMPTS[0]], GREEDY, stop_ids=[[999_999], list(stop)]).generations[0]
    assert (g.tokens, g.finish_reason, g.stop) == (full[:end], "stop", stop)
    # Rows of one batch stop independently; the others run to the limit.
    result = generate(model, [PROMPTS[0], PROMPTS[1]], GREEDY, stop_ids=[list(stop)])
    assert [g.finish_reason for g in result.generations][0] == "stop"
    assert result.generations[1].tokens == generate(model, [PROMPTS[1]], GREEDY).generations[0].tokens


def test_text_stop_sequences_match_the_decoded_output(model):
    # Tokenizer-agnostic: any ids -> text function. Here each id is one letter.
    decode = lambda ids: "".join(chr(ord("a") + i % 26) for i in ids)  # noqa: E731
    full = decode(generate(model, [PROMPTS[2]], GREEDY).generations[0].tokens)
    stop = full[9:12]
    g = generate(
        model, [PROMPTS[2]], GenerateParams(max_new_tokens=20, stop=["zzzzzz", stop]), decode=decode
    ).generations[0]
    assert g.finish_reason == "stop" and g.stop == stop
    assert decode(g.tokens) == full[: full.index(stop) + len(stop)]
    with pytest.raises(ValueError, match="generate.stop: .*decode="):
        generate(model, [PROMPTS[0]], GenerateParams(stop=["x"]))


def test_generate_text_with_the_project_tokenizer(model):
    from components.tokenize.core import train_tokenizer
    from llm.tokenizer import as_data_tokenizer
    from tests.gpt_fixtures import synthetic_documents

    tokenizer = as_data_tokenizer(train_tokenizer(synthetic_documents(100), 300))
    assert tokenizer.get_vocab_size() <= SHAPE.vocab_size
    prompts = ["The cat sees", "A small bird visits the old house"]
    texts, result = generate_text(model, tokenizer, prompts, GREEDY)
    assert len(texts) == 2 and all(t.text for t in texts)
    # Never a padding row of the embedding table (ids at and above the tokenizer's vocabulary).
    assert all(t < tokenizer.get_vocab_size() for g in result.generations for t in g.tokens)
    stop = texts[0].text[3:6]
    stopped, _ = generate_text(model, tokenizer, prompts[:1], GenerateParams(max_new_tokens=20, stop=[stop]))
    assert stopped[0].generation.finish_reason == "stop"
    assert stopped[0].text == texts[0].text[: texts[0].text.index(stop)]


def test_timings_and_the_model_mode(model):
    model.train()
    result = generate(model, PROMPTS, GREEDY)
    assert model.training  # restored after the call
    model.eval()
    assert result.steps == GREEDY.max_new_tokens
    assert result.new_tokens == 3 * GREEDY.max_new_tokens
    assert 0 < result.time_to_first_token_s <= result.seconds
    assert result.per_token_latency_s > 0
    assert set(result.timings()) == {
        "time_to_first_token_s",
        "per_token_latency_s",
        "seconds",
        "new_tokens",
        "tokens_per_s",
    }


def test_the_context_length_and_the_prompts_are_checked(model):
    with pytest.raises(
        ValueError, match=r"generate.max_new_tokens: prompts\[1\] has 40 tokens.*seq_length 48"
    ):
        generate(model, [[1], [2] * 40], GenerateParams(max_new_tokens=9))
    generate(model, [[2] * 40], GenerateParams(max_new_tokens=8))  # exactly fits
    with pytest.raises(ValueError, match=r"prompts\[0\]: empty prompt"):
        generate(model, [[]], GREEDY)
    with pytest.raises(ValueError, match=r"prompts\[0\]: token ids must be in \[0, 384\)"):
        generate(model, [[384]], GREEDY)
    with pytest.raises(ValueError, match="seeds: expected one per prompt"):
        generate(model, PROMPTS, SAMPLED, seeds=[1])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", "ten"),
        ("temperature", -0.5),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("seed", -1),
        ("stop", [""]),
    ],
)
def test_bad_settings_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"generate.{key}"):
        GenerateParams(**{key: value})


def test_params_load_as_a_strict_section():
    params = from_dict(GenerateParams, {"max_new_tokens": 16, "temperature": 1, "stop": ["\n\n"]}, "generate")
    assert params == GenerateParams(max_new_tokens=16, temperature=1.0, stop=["\n\n"])
    with pytest.raises(ParamsError, match="generate.top_q: unknown key"):
        from_dict(GenerateParams, {"top_q": 0.9}, "generate")
    with pytest.raises(ParamsError, match="generate.top_k: expected int"):
        from_dict(GenerateParams, {"top_k": 1.5}, "generate")
