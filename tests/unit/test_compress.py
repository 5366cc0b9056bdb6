"""compress: int8 storage, magnitude pruning, the student's layer map and loss; the stage end to
end on a tiny fine-tuned model (every variant loads with the float model's loader)."""

from __future__ import annotations

import json

import pytest
import torch

from components.common.params import ParamsError, from_dict
from components.compress.core import (
    distillation_loss,
    int8_state,
    magnitude_prune_,
    run,
    student_layer_map,
    student_state,
)
from components.compress.params import Params
from llm.classifier import dequantize_state, load_classifier, quantize_rows
from tests.task_fixtures import make_finetuned


def test_quantize_rows_round_trip_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(8, 16)
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and scale.shape == (8,)
    assert q.abs().amax(dim=1).tolist() == [127] * 8  # each row's largest |w| maps to 127
    back = dequantize_state({"w": q, "w.int8_scale": scale})
    assert set(back) == {"w"}
    assert (back["w"] - w).abs().max() <= scale.max() / 2 + 1e-6


def test_int8_state_quantizes_backbone_matrices_only():
    state = {
        "backbone.a.weight": torch.randn(4, 4),
        "backbone.a.bias": torch.randn(4),
        "head.weight": torch.randn(2, 4),
    }
    out = int8_state(state)
    assert out["backbone.a.weight"].dtype == torch.int8 and "backbone.a.weight.int8_scale" in out
    assert out["backbone.a.bias"].dtype == torch.float32 and out["head.weight"].dtype == torch.float32


def test_magnitude_prune_zeroes_the_smallest():
    w = torch.tensor([[0.5, -0.1, 2.0], [-3.0, 0.05, 0.2]])
    assert magnitude_prune_(w, 0.5) == 3
    assert w.tolist() == [[0.5, 0.0, 2.0], [-3.0, 0.0, 0.0]]
    assert magnitude_prune_(w, 0.0) == 0


def test_student_layer_map_and_state():
    assert student_layer_map(4, 2) == [0, 3]
    assert student_layer_map(6, 3) == [0, 2, 5]
    assert student_layer_map(4, 1) == [3]
    with pytest.raises(ValueError, match="distill_layers"):
        student_layer_map(2, 3)
    teacher = {f"backbone.decoder.layers.{i}.w": torch.full((1,), float(i)) for i in range(4)}
    teacher["head.weight"] = torch.ones(1)
    student = student_state(teacher, [0, 3])
    assert student["backbone.decoder.layers.1.w"].item() == 3.0
    assert set(student) == {"backbone.decoder.layers.0.w", "backbone.decoder.layers.1.w", "head.weight"}


def test_distillation_loss_limits():
    s = torch.tensor([[2.0, -1.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(s, y)
    assert distillation_loss(s, s * 5, y, 2.0, 0.0).item() == pytest.approx(ce.item())
    assert distillation_loss(s, s, y, 2.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)  # student == teacher


def test_params_are_checked():
    with pytest.raises(ParamsError, match="compress.variants"):
        from_dict(Params, {"variants": ["int4"]}, "compress")
    with pytest.raises(ParamsError, match="compress.prune_sparsity"):
        from_dict(Params, {"prune_sparsity": 1.5}, "compress")


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    return make_finetuned(tmp_path_factory.mktemp("compress"))


def test_compress_stage_end_to_end(finetuned, tmp_path):
    root = finetuned
    out = tmp_path / "compress"
    params = from_dict(Params, {"distill_layers": 1, "distill_epochs": 2, "prune_sparsity": 0.3}, "compress")
    metrics = run(str(root / "finetune"), str(root / "tokenize"), str(root / "task.jsonl"), str(out), params)
    assert sorted(metrics["variants"]) == ["distilled", "int8", "pruned"]
    assert json.loads((out / "metrics.json").read_text()) == metrics

    test = [json.loads(line) for line in (root / "task.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in test if r["split"] == "test"]
    float_pred, _ = load_classifier(root / "finetune").predict(texts)

    # int8: the same loader; agrees with the float model on >= 95% of the test reviews; ~4x
    # smaller weights on disk; its decoder runs dynamic int8 Linear kernels.
    int8 = load_classifier(out / "int8")
    int8_pred, _ = int8.predict(texts)
    agreement = sum(a == b for a, b in zip(float_pred, int8_pred, strict=True)) / len(texts)
    assert agreement >= 0.95
    assert int8.config.quantization == "int8-dynamic"
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in int8.model.modules())
    float_bytes = (root / "finetune" / "model.safetensors").stat().st_size
    assert (out / "int8" / "model.safetensors").stat().st_size < 0.6 * float_bytes

    # pruned: 30% of each decoder matrix is zero.
    pruned = load_classifier(out / "pruned")
    for name, p in pruned.model.backbone.decoder.named_parameters():
        if p.dim() == 2:
            assert (p == 0).float().mean().item() == pytest.approx(0.3, abs=0.01), name
    assert metrics["variants"]["pruned"]["agreement_with_float"] >= 0.8

    # distilled: one layer instead of two, trained (loss recorded per epoch).
    distilled = load_classifier(out / "distilled")
    assert distilled.config.gpt.num_layers == 1 and distilled.config.variant == "distilled"
    entry = metrics["variants"]["distilled"]
    assert entry["parameters"] < metrics["float"]["parameters"] and len(entry["distill_loss"]) == 2


def test_traced_inference_predicts_what_the_eager_model_does(finetuned, tmp_path):
    out = tmp_path / "compress"
    run(
        str(finetuned / "finetune"),
        str(finetuned / "tokenize"),
        str(finetuned / "task.jsonl"),
        str(out),
        from_dict(Params, {"variants": ["int8"]}, "compress"),
    )
    records = [json.loads(line) for line in (finetuned / "task.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in records] + ["", "ok", " ".join(["very long review"] * 40)]  # cut at 32
    for folder in (finetuned / "finetune", out / "int8"):
        traced, eager = load_classifier(folder), load_classifier(folder, trace=False)
        assert traced.traced is not None and eager.traced is None
        # Every batch size and length (the trace was recorded on one): the same scores.
        for batch_size in (1, 7, 128):
            assert torch.allclose(
                traced.predict_proba(texts, batch_size), eager.predict_proba(texts, batch_size), atol=1e-5
            )


def test_a_trace_that_does_not_match_the_model_is_refused(finetuned, monkeypatch, caplog):
    from llm.classifier import Classifier

    def forward(self, input_ids, lengths):  # data-dependent Python: a trace bakes one branch in
        logits = self.classify(self.features(input_ids, lengths))
        return logits * 2 if int(lengths.max()) > 4 else logits

    monkeypatch.setattr(Classifier, "forward", forward)
    classifier = load_classifier(finetuned / "finetune")
    assert classifier.traced is None
    assert "TorchScript trace refused" in caplog.text
    labels, _ = classifier.predict(["good film", "a bad, bad, bad and dull film"])
    assert len(labels) == 2  # it still serves, eagerly
