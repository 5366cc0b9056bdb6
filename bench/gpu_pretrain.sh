#!/usr/bin/env bash
# GPU throughput of our pretraining step: tokens/s and MFU of a ~1.3B GPT in bf16 on one GPU.
#
#   bench/gpu_pretrain.sh                      # from the repository root, on a machine with a GPU
#   MICRO_BATCH=8 STEPS=30 bench/gpu_pretrain.sh   # default micro batch 16: 86 GiB peak on an H200, 8: 54 GiB
#
# Needs a Python with CUDA torch and megatron-core (0.16.1 here; newer on NGC images) that can import
# this repository (PYTHON=... to pick it); Transformer Engine is used when importable (flash attention,
# fused LayerNorm+linear, fused wgrad accumulation), otherwise the local spec with torch SDPA attention.
#
# What runs is components.pretrain.training.Trainer.train_step, the exact step of the pretrain stage
# (megatron GPTModel + DistributedDataParallel + bf16 optimizer with fp32 master weights + the
# forward_backward schedule), on random tokens already on the GPU, so the figure is the training step,
# not the data pipeline. Model: GPT-3 XL shape (24 layers, hidden 2048, 16 heads, FFN 8192, context
# 2048, vocabulary 50304, tied embeddings, RoPE), ~1.3B parameters.
# MFU = tokens/s x model FLOPs per token (components/pretrain/accounting.py, Narayanan et al. 2021) /
# PEAK_FLOPS (default 989e12: H100/H200 SXM dense bf16). Goal: MFU >= 45%.
# Writes the figures as JSON to $OUT/gpu_pretrain.json when OUT is set, and prints them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_DEVICE_MAX_CONNECTIONS=1   # megatron's recommendation: kernel order = issue order
export TOKENIZERS_PARALLELISM=false
"$PYTHON" - <<'EOF'
import json
import os
import time

import torch

assert torch.cuda.is_available(), "gpu_pretrain.sh needs a CUDA GPU"
from llm.gpt import GPTShape, megatron_runtime
from llm.gpt.model import transformer_engine_available
from components.common.params import from_dict
from components.pretrain import accounting
from components.pretrain.params import Params
from components.pretrain.training import Trainer

MICRO = int(os.environ.get("MICRO_BATCH", "16"))
WARMUP = int(os.environ.get("WARMUP", "5"))
STEPS = int(os.environ.get("STEPS", "20"))
PEAK = float(os.environ.get("PEAK_FLOPS", "989e12"))
RECOMPUTE = os.environ.get("RECOMPUTE", "none")
LAYERS, HIDDEN, HEADS, FFN, SEQ, VOCAB = 24, 2048, 16, 8192, 2048, 50304

params = from_dict(
    Params,
    {
        "model": {
            "num_layers": LAYERS,
            "hidden_size": HIDDEN,
            "num_attention_heads": HEADS,
            "ffn_hidden_size": FFN,
            "seq_length": SEQ,
            "position_embedding_type": "rope",
        },
        "micro_batch_size": MICRO,
        "global_batch_size": MICRO,
        "train_steps": WARMUP + STEPS,
        "warmup_steps": 1,
        "lr": 2.0e-4,
        "min_lr": 2.0e-5,
        "precision": "bf16",
        "recompute": RECOMPUTE,
        "transformer_impl": "auto",
        "peak_flops_per_accelerator": PEAK,
    },
    "pretrain",
)
shape = GPTShape(
    vocab_size=VOCAB, seq_length=SEQ, num_layers=LAYERS, hidden_size=HIDDEN, num_attention_heads=HEADS,
    ffn_hidden_size=FFN, position_embedding_type="rope",
)
impl = "transformer_engine" if transformer_engine_available() else "local"
torch.backends.cuda.matmul.allow_tf32 = True
with megatron_runtime(seed=0):
    trainer = Trainer(shape, params, impl)
    n_params = sum(p.numel() for p in trainer.gpt.parameters())
    gen = torch.Generator(device="cuda").manual_seed(0)
    tokens = torch.randint(0, VOCAB, (MICRO, SEQ + 1), device="cuda", generator=gen)
    batch = {"tokens": tokens[:, :-1].contiguous(), "labels": tokens[:, 1:].contiguous(),
             "loss_mask": torch.ones(MICRO, SEQ, device="cuda")}
    for step in range(1, WARMUP + 1):
        loss, _norm, _ok = trainer.train_step(step, [batch])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(WARMUP + 1, WARMUP + STEPS + 1):
        loss, _norm, _ok = trainer.train_step(step, [batch])
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
tokens_per_s = STEPS * MICRO * SEQ / seconds
flops_per_token = accounting.model_flops_per_token(shape)
result = {
    "gpu": torch.cuda.get_device_name(0),
    "transformer_impl": impl,
    "parameters": n_params,
    "micro_batch": MICRO,
    "seq_length": SEQ,
    "recompute": RECOMPUTE,
    "step_seconds": seconds / STEPS,
    "tokens_per_s": tokens_per_s,
    "model_tflops_per_s": tokens_per_s * flops_per_token / 1e12,
    "mfu": accounting.mfu(tokens_per_s, flops_per_token, PEAK, 1),
    "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    "last_loss": loss,
}
print(json.dumps(result, indent=2))
print(f"MFU {100 * result['mfu']:.1f}% (goal >= 45%), {tokens_per_s:,.0f} tokens/s, {impl}")
if os.environ.get("OUT"):
    with open(os.path.join(os.environ["OUT"], "gpu_pretrain.json"), "w") as f:
        json.dump(result, f, indent=2)
EOF
