"""sft: the loss is on response tokens only (prompt targets carry no weight and no gradient),
prompts are cut from the left, malformed rows are set aside with a reason, training lowers the
response loss, and the output is a generator folder that loads with load_pretrained."""

from __future__ import annotations

import hashlib
import json
import pickle
import random
from pathlib import Path

import pytest
import torch

from components.common.entry import InputError
from components.common.params import ParamsError, from_dict
from components.sft.core import (
    Encoded,
    Pair,
    encode_pair,
    hash_split,
    make_batch,
    masked_loss,
    read_pairs,
    response_loss,
    run,
)
from components.sft.params import Params
from llm.formats import CHECKPOINT_DIR, GENERATOR_FILE, GPT_SHAPE_FILE, TOKENIZER_FILE
from tests.task_fixtures import make_pretrained, make_tokenized, sentiment_text

FAST = {
    "steps": 30,
    "batch_size": 8,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "warmup_steps": 2,
    "valid_interval": 10,
    "max_seq_tokens": 32,
}


def write_pairs(path: Path, n: int = 120, seed: int = 0, extra: list[str] = ()) -> Path:
    """Prompt "<review> sentiment:" -> response " positive" / " negative" (the cue words decide)."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        positive = rng.random() < 0.5
        row = {
            "id": f"p{i}",
            "prompt": sentiment_text(rng, positive) + " sentiment:",
            "response": " positive" if positive else " negative",
        }
        if i % 5 == 0:
            row["split"] = "valid"
        lines.append(json.dumps(row))
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    tokenized = make_tokenized(root / "tokenize")
    pretrained = make_pretrained(root / "pretrain", tokenized)
    return root, tokenized, pretrained


def _params(**overrides) -> Params:
    return from_dict(Params, {**FAST, **overrides}, "sft")


# ----------------------------------------------------------------------------- pure helpers


def test_make_batch_masks_every_prompt_target_and_the_padding():
    # prompt 5 6 7 | response 8 9 | end 0; a second, shorter pair padded with 1.
    inputs, targets, mask = make_batch([Encoded([5, 6, 7, 8, 9, 0], 3), Encoded([4, 8, 0], 2)], pad_id=1)
    assert inputs.tolist() == [[5, 6, 7, 8, 9], [4, 8, 1, 1, 1]]
    assert targets.tolist() == [[6, 7, 8, 9, 0], [8, 0, 1, 1, 1]]
    # Trained targets: exactly the response tokens and the end token (8 9 0; 0), nothing else.
    assert mask.tolist() == [[0, 0, 1, 1, 1], [0, 1, 0, 0, 0]]
    assert targets[mask.bool()].tolist() == [8, 9, 0, 0]


def test_masked_loss_gives_prompt_positions_zero_gradient():
    losses = torch.rand(2, 5, requires_grad=True)
    _, _, mask = make_batch([Encoded([5, 6, 7, 8, 9, 0], 3), Encoded([4, 8, 0], 2)], pad_id=1)
    total, count = masked_loss(losses, mask)
    (total / count).backward()
    assert count.item() == 4
    assert torch.all(losses.grad[mask == 0] == 0)
    assert torch.allclose(losses.grad[mask == 1], torch.full((4,), 0.25))


def test_encode_pair_cuts_the_prompt_from_the_left_and_keeps_the_response():
    seq = encode_pair([1, 2, 3, 4, 5, 6], [7, 8], eod_id=0, max_tokens=6)
    assert seq.ids == [4, 5, 6, 7, 8, 0] and seq.prompt_len == 3 and seq.cut == 3
    assert encode_pair([1, 2], [7], 0, 8) == Encoded([1, 2, 7, 0], 2, 0)
    assert encode_pair([1, 2], [7, 8, 9], eod_id=0, max_tokens=4) is None  # no prompt token fits


def test_hash_split_keeps_a_given_split_and_is_stable():
    assert hash_split(Pair("a", "p", "r", "test"), 0.5, 0) == "test"
    pairs = [Pair(str(i), f"prompt {i}", "r", "") for i in range(400)]
    first = [hash_split(p, 0.25, 0) for p in pairs]
    assert first == [hash_split(p, 0.25, 0) for p in reversed(pairs)][::-1]
    assert 60 < first.count("valid") < 140 and set(first) == {"train", "valid"}
    assert first != [hash_split(p, 0.25, 1) for p in pairs]  # the seed moves rows


def test_malformed_rows_are_set_aside_with_a_reason(tmp_path):
    good = json.dumps({"prompt": "q", "response": "a"})
    rows = [
        good,
        "{not json",
        "[1, 2]",
        json.dumps({"response": "a"}),
        json.dumps({"prompt": "q", "response": 3}),
        json.dumps({"prompt": "", "response": "a"}),
        json.dumps({"prompt": "q", "response": ""}),
        json.dumps({"prompt": "q", "response": "a", "split": "dev"}),
        "",
        json.dumps({"prompt": "q2", "response": "a", "split": "test", "id": "t1"}),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(rows) + "\n")
    splits, rejected = read_pairs(str(path), _params(valid_fraction=0.0))
    assert [(r["line"], r["reason"]) for r in rejected] == [
        (2, "not_json"),
        (3, "not_an_object"),
        (4, "bad_prompt"),
        (5, "bad_response"),
        (6, "empty_prompt"),
        (7, "empty_response"),
        (8, "bad_split"),
    ]
    assert rejected[0]["text"] == "{not json"
    assert [p.id for p in splits["train"]] == ["line-1"] and [p.id for p in splits["test"]] == ["t1"]


def test_bad_params_name_the_key():
    with pytest.raises(ParamsError, match=r"^sft\.steps: must be > 0"):
        from_dict(Params, {"steps": 0}, "sft")
    with pytest.raises(ParamsError, match=r"^sft\.lr: expected float, got str"):
        from_dict(Params, {"lr": "fast"}, "sft")
    with pytest.raises(ParamsError, match=r"^sft\.epochs: unknown key"):
        from_dict(Params, {"epochs": 1}, "sft")
    with pytest.raises(ParamsError, match=r"^sft\.max_seq_tokens: must be >= 3"):
        from_dict(Params, {"max_seq_tokens": 2}, "sft")
    with pytest.raises(ParamsError, match=r"^sft\.min_lr"):
        from_dict(Params, {"lr": 1e-4, "min_lr": 1e-3}, "sft")
    with pytest.raises(ParamsError, match=r"^sft\.accelerator_type: required"):
        from_dict(Params, {"accelerator_count": 1}, "sft")


# ----------------------------------------------------------------------------- on the tiny GPT


def test_the_loss_ignores_prompt_targets_but_not_response_targets(inputs):
    from llm.gpt import load_pretrained, megatron_runtime

    _, _, pretrained = inputs
    seqs = [Encoded([5, 6, 7, 8, 9, 10, 0], 4), Encoded([11, 12, 13, 14, 0], 2)]
    x, targets, mask = make_batch(seqs, pad_id=1)
    scrambled = torch.where(mask.bool(), targets, torch.randint(2, 200, targets.shape))
    assert not torch.equal(scrambled, targets)
    with megatron_runtime(seed=0):
        model, _ = load_pretrained(pretrained)
        model.train()

        def loss_and_grads(t):
            model.zero_grad(set_to_none=True)
            total, n = response_loss(model, x, t, mask)
            (total / n).backward()
            return (total / n).item(), [p.grad.clone() for p in model.parameters()]

        base, base_grads = loss_and_grads(targets)
        same, same_grads = loss_and_grads(scrambled)
        # Changing a response target does change it (the test can fail).
        response_changed = targets.clone()
        response_changed[0, 4] = 77
        changed, _ = loss_and_grads(response_changed)
        # Without the mask (every target counts) the loss is another number.
        everything, _ = response_loss(model, x, targets, torch.ones_like(mask))
    assert same == base
    assert all(torch.equal(a, b) for a, b in zip(base_grads, same_grads, strict=True))
    assert changed != pytest.approx(base, abs=1e-6)
    assert everything.item() / mask.numel() != pytest.approx(base, abs=1e-6)


def test_training_lowers_the_response_loss_and_writes_a_generator_folder(inputs, tmp_path):
    from llm.gpt import load_pretrained, megatron_runtime

    _, tokenized, pretrained = inputs
    pairs = write_pairs(tmp_path / "pairs.jsonl", extra=["{oops", json.dumps({"prompt": "x"})])
    out = tmp_path / "sft"
    params = _params(valid_fraction=0.0)  # valid = the rows marked so: exact counts
    metrics = run(str(pretrained), str(pairs), str(out), params, tokenized=str(tokenized))
    assert metrics["valid_loss_last"] < 0.6 * metrics["valid_loss_first"]
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    assert (metrics["train_pairs"], metrics["valid_pairs"], metrics["rejected"]) == (96, 24, 2)
    assert metrics["rejected_by_reason"]["not_json"] == 1
    assert metrics["rejected_by_reason"]["bad_response"] == 1
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejected] == [(121, "not_json"), (122, "bad_response")]
    assert {p.name for p in out.iterdir()} == {
        GPT_SHAPE_FILE,
        CHECKPOINT_DIR,
        TOKENIZER_FILE,
        GENERATOR_FILE,
        "rejected.jsonl",
        "steps.csv",
        "loss.csv",
        "metrics.json",
    }
    assert len((out / "steps.csv").read_text().splitlines()) == 1 + FAST["steps"]
    assert len((out / "loss.csv").read_text().splitlines()) == 1 + 1 + FAST["steps"] // FAST["valid_interval"]
    assert (out / TOKENIZER_FILE).read_bytes() == (tokenized / TOKENIZER_FILE).read_bytes()
    config = json.loads((out / GENERATOR_FILE).read_text())
    assert config == {
        "format": "gpt-generator",
        "quantization": "none",
        "task": "qa",
        "max_new_tokens": 16,
        "stop": ["\n"],
        "choice_template": " {choice}\n",
    }
    with megatron_runtime(seed=0):
        tuned, shape = load_pretrained(out)
        base, _ = load_pretrained(pretrained)
        assert shape.seq_length == 32
        assert any(not torch.equal(a, b) for a, b in zip(tuned.parameters(), base.parameters(), strict=True))

    # The same inputs and params give the same bytes (seeded; the checkpoint has no save identity).
    # checkpoint/.metadata is compared as the object it pickles: the order in which torch's writer
    # lists the shards there depends on the saves this process made before (a fresh stage process,
    # as under DVC and KFP, writes the same bytes each time: checked with three hash seeds).
    again = tmp_path / "again"
    run(str(pretrained), str(pairs), str(again), params, tokenized=str(tokenized))

    def digest(folder: Path) -> dict[str, str]:
        return {
            str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("metrics.json", ".metadata")
        }

    def metadata(folder: Path) -> dict:
        return vars(pickle.loads((folder / CHECKPOINT_DIR / ".metadata").read_bytes()))

    assert digest(out) == digest(again)
    assert metadata(out) == metadata(again)


def test_a_run_with_no_train_pair_left_is_refused(inputs, tmp_path):
    _, tokenized, pretrained = inputs
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("{bad\n" + json.dumps({"prompt": "q", "response": ""}) + "\n")
    out = tmp_path / "sft"
    with pytest.raises(
        InputError, match=r"no train pair left in .*\(2 rejected: \{'empty_response': 1, 'not_json': 1\}\)"
    ):
        run(str(pretrained), str(pairs), str(out), _params(), tokenized=str(tokenized))
    assert not out.exists()


def test_the_default_choice_template_is_the_qa_response_format():
    from components.sft.params import Params
    from llm.qa import format_response

    assert Params().choice_template.replace("{choice}", "Betsy DeVos") == format_response("Betsy DeVos")
    with pytest.raises(ParamsError, match="sft.choice_template"):
        from_dict(Params, {"choice_template": " answer"}, "sft")
