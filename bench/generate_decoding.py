"""Decoding speed with megatron's key/value cache against recomputing the prefix, same run.

    .venv/bin/python bench/generate_decoding.py [--threads 2] [--rounds 3] [--new-tokens 256]

One model, one prompt, greedy decoding of ``--new-tokens`` tokens by ``llm.gpt.generate.generate``
both ways:

- cached: megatron-core's ``StaticInferenceContext`` (the prompt once, then one token per step);
- uncached: the reference mode (``use_cache=False``), the whole sequence through the model at
  every step (the output layer on the last position only, as the cached path).

The model has the pretrain CPU demo's shape, read from params.yaml's ``pretrain.model`` (4 layers,
hidden 256, 4 heads, FFN 1024, vocabulary 8192 as tokenize.vocab_size), with the position table
lengthened when the demo's context (256) cannot hold the prompt plus the new tokens: the compute per
token does not depend on the table's size. Weights are random (speed does not depend on them); the
run asserts both modes produced the same tokens. The two modes alternate in rounds (machine noise
hits both alike); figures are medians. Goal: cached/uncached >= 5x. Prints the ratio; not a test.

On 2 CPU cores at batch 1 the ratio is bounded by megatron's fixed Python cost per forward (about
3.5 of the ~4.3 ms of a cached step; see llm/gpt/generate.py), so it stays near 3x here.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    args = parser.parse_args()

    from llm.gpt import build_gpt, megatron_runtime
    from llm.gpt.generate import GenerateParams, generate

    torch.set_num_threads(args.threads)
    shape, demo_seq = demo_shape(args.prompt_tokens, args.new_tokens)
    prompt = torch.randint(
        2, shape.vocab_size, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0)
    )
    params = GenerateParams(max_new_tokens=args.new_tokens)
    with megatron_runtime(seed=0):
        model = build_gpt(shape).eval()
        generate(model, [prompt.tolist()], GenerateParams(max_new_tokens=8))  # warm-up (allocations)
        generate(model, [prompt.tolist()], GenerateParams(max_new_tokens=8), use_cache=False)
        rates: dict[str, list[float]] = {"cached": [], "uncached": []}
        ttft: dict[str, list[float]] = {"cached": [], "uncached": []}
        tokens: dict[str, list[int]] = {}
        for _ in range(args.rounds):
            for name in rates:
                result = generate(model, [prompt.tolist()], params, use_cache=name == "cached")
                assert result.new_tokens == args.new_tokens, result.new_tokens
                rates[name].append(result.tokens_per_s)
                ttft[name].append(result.time_to_first_token_s)
                tokens[name] = result.generations[0].tokens
        assert tokens["cached"] == tokens["uncached"], "cached and uncached greedy tokens differ"
    cached, uncached = statistics.median(rates["cached"]), statistics.median(rates["uncached"])
    print(
        f"GPT {shape.num_layers}x{shape.hidden_size} (heads {shape.num_attention_heads}, ffn "
        f"{shape.ffn_hidden_size}, vocab {shape.vocab_size}, {shape.position_embedding_type} positions; "
        f"position table {shape.seq_length}, demo {demo_seq}), random init, fp32, {args.threads} threads, "
        f"batch 1, prompt {args.prompt_tokens} + {args.new_tokens} new tokens greedy, {args.rounds} rounds"
    )
    for name, rate in (("cached", cached), ("uncached", uncached)):
        print(
            f"  {name:9s} {rate:8.1f} tokens/s   first token {statistics.median(ttft[name]) * 1000:6.1f} ms   "
            f"rounds {[round(r, 1) for r in rates[name]]}"
        )
    print(f"  ratio cached/uncached: {cached / uncached:.2f}x (goal >= 5x); same tokens both ways")


if __name__ == "__main__":
    main()
