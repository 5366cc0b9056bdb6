"""The shared megatron GPT package: build, forward shapes, checkpoint round trip, helpers."""

from __future__ import annotations

import math

import pytest
import torch

from llm.gpt import (
    GPTShape,
    build_gpt,
    hidden_states,
    init_runtime,
    load_checkpoint,
    load_pretrained,
    logits,
    megatron_runtime,
    save_checkpoint,
    shutdown_runtime,
    token_losses,
)

SHAPE = GPTShape(
    vocab_size=96,
    seq_length=16,
    num_layers=2,
    hidden_size=32,
    num_attention_heads=4,
    ffn_hidden_size=64,
)


@pytest.fixture(scope="module")
def runtime():
    with megatron_runtime(seed=3):
        yield


def _tensors(model) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if torch.is_tensor(v)}


def test_shape_json_round_trip_and_validation(tmp_path):
    SHAPE.to_json(tmp_path / "model.json")
    assert GPTShape.from_json(tmp_path / "model.json") == SHAPE
    with pytest.raises(ValueError, match="num_attention_heads"):
        GPTShape(
            vocab_size=8, seq_length=8, num_layers=1, hidden_size=30, num_attention_heads=4, ffn_hidden_size=8
        )


def test_forward_shapes_and_parameter_count(runtime):
    model = build_gpt(SHAPE)
    ids = torch.randint(0, SHAPE.vocab_size, (3, 10), generator=torch.Generator().manual_seed(0))
    assert logits(model, ids).shape == (3, 10, SHAPE.vocab_size)
    assert hidden_states(model, ids).shape == (3, 10, SHAPE.hidden_size)
    losses = token_losses(model, ids, ids.roll(-1, dims=1))
    assert losses.shape == (3, 10)
    assert torch.isfinite(losses).all()
    # An untrained model is close to uniform over the vocabulary: loss ~ ln V.
    assert abs(losses.mean().item() - math.log(SHAPE.vocab_size)) < 0.5
    assert sum(p.numel() for p in model.parameters()) == SHAPE.num_parameters()


def test_hidden_states_are_what_the_output_layer_reads(runtime):
    # With tied embeddings the logits are the final-layernorm states times the embedding matrix,
    # so this pins hidden_states to "after the final layernorm".
    model = build_gpt(SHAPE).eval()
    ids = torch.randint(0, SHAPE.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        states = hidden_states(model, ids)
        expected = logits(model, ids)
        embedding = model.embedding.word_embeddings.weight
    torch.testing.assert_close(states @ embedding.T, expected, rtol=1e-4, atol=1e-4)


def test_megatron_grad_norm_works_on_cpu(runtime):
    from megatron.core.optimizer.clip_grads import get_grad_norm_fp32

    model = build_gpt(SHAPE)
    ids = torch.arange(16).reshape(2, 8)
    token_losses(model, ids, ids.roll(-1, dims=1)).mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    expected = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    assert get_grad_norm_fp32(grads) == pytest.approx(expected.item(), rel=1e-5)


def test_attention_is_causal(runtime):
    model = build_gpt(SHAPE).eval()
    ids = torch.randint(0, SHAPE.vocab_size, (1, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % SHAPE.vocab_size
    with torch.no_grad():
        a, b = hidden_states(model, ids), hidden_states(model, changed)
    assert torch.equal(a[:, :8], b[:, :8])  # earlier positions never see later tokens
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_the_same_weights_save_to_the_same_bytes_wherever_saved(runtime, tmp_path):
    # DVC caches the checkpoint by content: no path or random save id may enter its files.
    model = build_gpt(SHAPE)
    save_checkpoint(model, tmp_path / "a" / "checkpoint")
    save_checkpoint(model, tmp_path / "elsewhere" / "b")
    a, b = tmp_path / "a" / "checkpoint", tmp_path / "elsewhere" / "b"
    names = sorted(p.name for p in a.iterdir())
    assert ".metadata" in names and names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert str(tmp_path).encode() not in (a / ".metadata").read_bytes()


def test_checkpoint_round_trip_is_bit_exact(runtime, tmp_path):
    model = build_gpt(SHAPE)
    save_checkpoint(model, tmp_path / "checkpoint")
    SHAPE.to_json(tmp_path / "model.json")
    init_runtime(seed=99)  # different seed: a fresh model starts from different weights
    other = build_gpt(SHAPE)
    before = _tensors(other)
    assert any(not torch.equal(before[k], v) for k, v in _tensors(model).items())
    load_checkpoint(other, tmp_path / "checkpoint")
    expected = _tensors(model)
    loaded = _tensors(other)
    assert expected.keys() == loaded.keys()
    for key, value in expected.items():
        assert torch.equal(value, loaded[key]), key

    pretrained, shape = load_pretrained(tmp_path)
    assert shape == SHAPE and not pretrained.training
    ids = torch.arange(12).reshape(2, 6)
    with torch.no_grad():
        assert torch.equal(logits(pretrained, ids), logits(model.eval(), ids))


def test_runtime_restarts(tmp_path):
    # shutdown + init again (what each stage and each test does) leaves a usable runtime.
    shutdown_runtime()
    with megatron_runtime(seed=0):
        first = _tensors(build_gpt(SHAPE))
    with megatron_runtime(seed=0):
        second = _tensors(build_gpt(SHAPE))
    for key, value in first.items():
        assert torch.equal(value, second[key]), key


def test_fused_attention_matches_megatrons_dot_product_attention(runtime):
    # build_gpt's local spec swaps megatron's unfused DotProductAttention for SDPAttention: the
    # same function, so the same seed gives the same logits and gradients up to float rounding.
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    from llm.gpt.attention import SDPAttention
    from llm.gpt.model import layer_spec

    assert layer_spec(SHAPE).submodules.self_attention.submodules.core_attention is SDPAttention
    init_runtime(seed=5)
    ours = build_gpt(SHAPE)
    init_runtime(seed=5)
    theirs = build_gpt(SHAPE)
    for layer in theirs.decoder.layers:
        layer.self_attention.core_attention.__class__ = DotProductAttention
    ids = torch.randint(0, SHAPE.vocab_size, (2, 12), generator=torch.Generator().manual_seed(4))
    a, b = token_losses(ours, ids, ids.roll(-1, 1)), token_losses(theirs, ids, ids.roll(-1, 1))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.sum().backward()
    b.sum().backward()
    grad = "decoder.layers.0.self_attention.linear_qkv.weight"
    ga, gb = (dict(m.named_parameters())[grad].grad for m in (ours, theirs))
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def test_fused_attention_honours_a_non_causal_mask(runtime):
    # Any mask other than the cached causal one is read (True = masked out, megatron's convention).
    from llm.gpt import causal_inputs

    model = build_gpt(SHAPE).eval()
    ids = torch.randint(0, SHAPE.vocab_size, (1, 8), generator=torch.Generator().manual_seed(3))
    positions, causal = causal_inputs(ids)
    with torch.no_grad():
        expected = model(ids, positions, causal)
        same = model(ids, positions, causal.clone())  # equal values, not the cached object
        blind = torch.ones_like(causal)
        blind[..., 0] = False  # every position sees only the first token
        first_only = model(ids, positions, blind)
    torch.testing.assert_close(same, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first_only[:, 1:], expected[:, 1:])


def test_bf16_weights_are_saved_as_fp32_and_load_into_an_fp32_model(runtime, tmp_path):
    model = build_gpt(SHAPE).to(torch.bfloat16)
    save_checkpoint(model, tmp_path / "checkpoint")
    other = build_gpt(SHAPE)
    load_checkpoint(other, tmp_path / "checkpoint")
    for key, value in _tensors(model).items():
        loaded = _tensors(other)[key]
        assert loaded.dtype == torch.float32 and torch.equal(loaded, value.float()), key


def test_a_causal_mask_first_made_in_inference_mode_is_a_normal_tensor():
    # The classifier serves under torch.inference_mode; a mask it caused to be cached must still
    # be usable by a later training forward that saves it for backward (seen: test_finetune then
    # test_pretrain's activation recomputation failed with "Inference tensors cannot be saved").
    from llm.gpt.masks import causal_inputs

    ids = torch.zeros(1, 37, dtype=torch.long)  # a length no other test asks for first
    with torch.inference_mode():
        _, mask = causal_inputs(ids)
    assert not mask.is_inference()
    assert causal_inputs(ids)[1] is mask  # still one cached mask per length and device
