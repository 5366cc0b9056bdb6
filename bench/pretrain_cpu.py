"""CPU throughput of our megatron-core training step against a plain-PyTorch GPT, same run.

    .venv/bin/python bench/pretrain_cpu.py [--threads 2] [--rounds 5] [--steps 4]

Both sides train the same GPT shape (the pretrain CPU demo: 4 layers, hidden 256, 4 heads, FFN
1024, context 256, vocabulary 8192, tied embeddings, learned positions, LayerNorm, GeLU) with
the same parameter count, batch (8 sequences per step), AdamW (decay on matrices only) and
gradient clipping at 1.0, on the same random tokens, in fp32 on ``--threads`` threads:

- ours: ``components.pretrain.training.Trainer.train_step``, the exact step the pretrain stage
  runs (megatron GPTModel + DistributedDataParallel + megatron optimizer + forward_backward
  schedule, gloo world of one);
- peer: a nanoGPT-style ``torch.nn`` model, ``loss.backward()``, ``clip_grad_norm_``,
  ``torch.optim.AdamW.step()``.

The two alternate in rounds (so machine noise hits both alike); the figure is the median
tokens/s over rounds. Goal: ratio ours/peer >= 0.9. Prints the ratio; not a test.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, SEQ, LAYERS, HIDDEN, HEADS, FFN, BATCH = 8192, 256, 4, 256, 4, 1024, 8


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.qkv, self.proj = nn.Linear(HIDDEN, 3 * HIDDEN), nn.Linear(HIDDEN, HIDDEN)
        self.fc1, self.fc2 = nn.Linear(HIDDEN, FFN), nn.Linear(FFN, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, HEADS, c // HEADS).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, C/H)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class PlainGPT(nn.Module):
    """GPT-2 style, pre-norm, tied embeddings: the parameters of megatron's GPTModel."""

    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, HIDDEN), nn.Embedding(SEQ, HIDDEN)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(HIDDEN)
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, VOCAB), labels.reshape(-1))


def peer_step_fn():
    model = PlainGPT()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=6e-4,
        betas=(0.9, 0.95),
    )

    def step(batch: dict[str, torch.Tensor]) -> float:
        opt.zero_grad(set_to_none=True)
        loss = model(batch["tokens"], batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    return model, step


def ours_step_fn(unfused: bool = False):
    from components.common.params import from_dict
    from components.pretrain.params import Params
    from components.pretrain.training import Trainer
    from llm.gpt import GPTShape

    params = from_dict(
        Params,
        {
            "model": {
                "num_layers": LAYERS,
                "hidden_size": HIDDEN,
                "num_attention_heads": HEADS,
                "ffn_hidden_size": FFN,
                "seq_length": SEQ,
            },
            "micro_batch_size": BATCH,
            "global_batch_size": BATCH,
        },
        "pretrain",
    )
    shape = GPTShape(
        vocab_size=VOCAB,
        seq_length=SEQ,
        num_layers=LAYERS,
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        ffn_hidden_size=FFN,
    )
    trainer = Trainer(shape, params, "local")
    if unfused:  # megatron's own DotProductAttention: the untuned step, for comparison
        from megatron.core.transformer.dot_product_attention import DotProductAttention

        for layer in trainer.gpt.decoder.layers:
            layer.self_attention.core_attention.__class__ = DotProductAttention
    counter = iter(range(1, 10**9))
    return trainer.gpt, lambda batch: trainer.train_step(next(counter), [batch])[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side and round")
    parser.add_argument(
        "--with-unfused", action="store_true", help="also time our step with megatron's unfused attention"
    )
    args = parser.parse_args()

    from llm.gpt import megatron_runtime

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, VOCAB, (BATCH, SEQ + 1), generator=gen)
    batch = {"tokens": tokens[:, :-1], "labels": tokens[:, 1:], "loss_mask": torch.ones(BATCH, SEQ)}
    with megatron_runtime(seed=0):
        torch.manual_seed(0)
        peer_model, peer = peer_step_fn()
        ours_model, ours = ours_step_fn()
        sides = {"ours": ours, "peer": peer}
        if args.with_unfused:
            sides["ours_unfused"] = ours_step_fn(unfused=True)[1]
        n_peer = sum(p.numel() for p in peer_model.parameters())
        n_ours = sum(p.numel() for p in ours_model.parameters())
        assert n_peer == n_ours, (n_peer, n_ours)
        first = {name: step(batch) for name, step in sides.items()}  # warm-up (allocations, lazy init)
        assert all(abs(v - math.log(VOCAB)) < 0.5 for v in first.values()), first
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, step in sides.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step(batch)
                rates[name].append(args.steps * BATCH * SEQ / (time.perf_counter() - t0))
    ours_rate, peer_rate = statistics.median(rates["ours"]), statistics.median(rates["peer"])
    print(
        f"GPT {LAYERS}x{HIDDEN} (heads {HEADS}, ffn {FFN}, seq {SEQ}, vocab {VOCAB}), {n_ours:,} parameters, "
        f"batch {BATCH}, fp32, {args.threads} threads, {args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"  ours (megatron-core step): {ours_rate:8.0f} tokens/s   rounds {[round(r) for r in rates['ours']]}"
    )
    print(
        f"  peer (plain PyTorch):      {peer_rate:8.0f} tokens/s   rounds {[round(r) for r in rates['peer']]}"
    )
    if args.with_unfused:
        unfused = statistics.median(rates["ours_unfused"])
        print(
            f"  ours, unfused attention:   {unfused:8.0f} tokens/s   ratio to peer {unfused / peer_rate:.2f}"
        )
    print(f"  ratio ours/peer: {ours_rate / peer_rate:.2f} (goal >= 0.90)")


if __name__ == "__main__":
    main()
