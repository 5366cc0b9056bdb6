"""Decoding speed with megatron's key/value cache against recomputing the prefix, same run.

    .venv/bin/python bench/generate_decoding.py [--threads 2] [--rounds 3] [--new-tokens 256]

One model; for each prompt length (``--prompt-tokens``, default 32 and 160), greedy decoding of
``--new-tokens`` tokens by ``llm.gpt.generate.generate`` both ways:

- cached: megatron-core's ``StaticInferenceContext`` (the prompt once, then one token per step);
- uncached: the reference mode (``use_cache=False``), the whole sequence through the model at
  every step (the output layer on the last position only, as the cached path).

160 tokens is the demo's QA prompt (an 80-word passage and the question, ``ingest.qa``), the length
the generator is served at; 32 is a short chat-like prompt. The model has the pretrain CPU demo's
shape, read from params.yaml's ``pretrain.model`` (4 layers, hidden 256, 4 heads, FFN 1024,
vocabulary 8192 as tokenize.vocab_size), with the position table lengthened when the demo's
context (256) cannot hold the prompt plus the new tokens: the compute per token does not depend on
the table's size. Weights are random (speed does not depend on them); the run asserts both modes
produced the same tokens. The two modes alternate in rounds (machine noise hits both alike);
figures are medians. Goal: cached/uncached >= 5x. Prints the ratios; not a test.

Measured on 2 shared CPU cores (load ~1), 256 new tokens: prompt 32: 305 vs 82 tokens/s, 3.7x;
prompt 160: 224 vs 42 tokens/s, 5.4x. At batch 1 the ratio is bounded by megatron's fixed Python
cost per forward (about 3.5 of the ~4.3 ms of a cached step; see llm/gpt/generate.py), which the
cache cannot remove: the longer the prefix it saves, the larger the gain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def demo_shape(prompt_tokens: int, new_tokens: int):
    """The pretrain demo's GPTShape (params.yaml), its context at least prompt + new tokens."""
    from components.common.params import from_dict
    from components.pretrain.params import ModelParams
    from llm.gpt import GPTShape

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    model = from_dict(ModelParams, raw["pretrain"]["model"], "pretrain.model")
    return GPTShape(
        vocab_size=int(raw["tokenize"]["vocab_size"]),
        seq_length=max(model.seq_length, prompt_tokens + new_tokens),
        num_layers=model.num_layers,
        hidden_size=model.hidden_size,
        num_attention_heads=model.num_attention_heads,
        ffn_hidden_size=model.ffn_hidden_size,
        position_embedding_type=model.position_embedding_type,
        tie_embeddings=model.tie_embeddings,
        normalization=model.normalization,
    ), model.seq_length


def measure(model, prompt: list[int], new_tokens: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median tokens/s and time to first token of each mode over ``rounds`` alternating rounds;
    asserts both modes gave the same greedy tokens."""
    from llm.gpt.generate import GenerateParams, generate

    params = GenerateParams(max_new_tokens=new_tokens)
    rates: dict[str, list[float]] = {"cached": [], "uncached": []}
    ttft: dict[str, list[float]] = {"cached": [], "uncached": []}
    tokens: dict[str, list[int]] = {}
    for _ in range(rounds):
        for name in rates:
            result = generate(model, [prompt], params, use_cache=name == "cached")
            assert result.new_tokens == new_tokens, result.new_tokens
            rates[name].append(result.tokens_per_s)
            ttft[name].append(result.time_to_first_token_s)
            tokens[name] = result.generations[0].tokens
    assert tokens["cached"] == tokens["uncached"], "cached and uncached greedy tokens differ"
    return {
        name: {
            "tokens_per_s": statistics.median(rates[name]),
            "ttft_ms": statistics.median(ttft[name]) * 1000,
            "rounds": [round(r, 1) for r in rates[name]],
        }
        for name in rates
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument(
        "--prompt-tokens",
        type=int,
        nargs="+",
        default=[32, 160],
        help="prompt lengths to measure; 160 is a QA prompt of the demo (80-word passage + question)",
    )
    args = parser.parse_args()

    from llm.gpt import build_gpt, megatron_runtime
    from llm.gpt.generate import GenerateParams, generate

    torch.set_num_threads(args.threads)
    shape, demo_seq = demo_shape(max(args.prompt_tokens), args.new_tokens)
    print(
        f"GPT {shape.num_layers}x{shape.hidden_size} (heads {shape.num_attention_heads}, ffn "
        f"{shape.ffn_hidden_size}, vocab {shape.vocab_size}, {shape.position_embedding_type} positions; "
        f"position table {shape.seq_length}, demo {demo_seq}), random init, fp32, {args.threads} threads, "
        f"batch 1, {args.new_tokens} new tokens greedy, {args.rounds} rounds"
    )
    with megatron_runtime(seed=0):
        model = build_gpt(shape).eval()
        for prompt_tokens in args.prompt_tokens:
            prompt = torch.randint(
                2, shape.vocab_size, (prompt_tokens,), generator=torch.Generator().manual_seed(0)
            ).tolist()
            warm = GenerateParams(max_new_tokens=8)  # allocations, caches
            generate(model, [prompt], warm)
            generate(model, [prompt], warm, use_cache=False)
            figures = measure(model, prompt, args.new_tokens, args.rounds)
            print(f"prompt {prompt_tokens} tokens + {args.new_tokens} new:")
            for name, f in figures.items():
                print(
                    f"  {name:9s} {f['tokens_per_s']:8.1f} tokens/s   first token {f['ttft_ms']:6.1f} ms   "
                    f"rounds {f['rounds']}"
                )
            ratio = figures["cached"]["tokens_per_s"] / figures["uncached"]["tokens_per_s"]
            print(f"  ratio cached/uncached: {ratio:.2f}x (goal >= 5x); same tokens both ways")


if __name__ == "__main__":
    main()
