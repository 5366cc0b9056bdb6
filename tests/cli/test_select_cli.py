"""``python -m components.select``: promotion, then a refused regression (exit 1, clear message)."""

from __future__ import annotations

import json

from components.select.__main__ import main
from tests.task_fixtures import write_params
from tests.unit.test_select import ROWS


def test_main_promotes_then_refuses_a_worse_model(tmp_path, capsys):
    evaluation = tmp_path / "evaluate"
    evaluation.mkdir()
    (evaluation / "models.json").write_text(
        json.dumps({"task_split": "test", "examples": 10, "models": ROWS})
    )
    for folder in (
        tmp_path / "finetune",
        tmp_path / "compress" / "int8",
        tmp_path / "compress" / "distilled",
    ):
        folder.mkdir(parents=True)
        for name in ("classifier.json", "model.safetensors", "tokenizer.json"):
            (folder / name).write_text("{}")
    promoted = tmp_path / "promoted.json"
    args = [
        *("--evaluation", str(evaluation), "--finetuned", str(tmp_path / "finetune")),
        *("--variants", str(tmp_path / "compress"), "--promoted", str(promoted)),
    ]
    params = write_params(tmp_path / "params.yaml")
    assert main([*args, "--output", str(tmp_path / "select"), "--params", str(params)]) == 0
    assert json.loads(promoted.read_text())["model"] == "int8"

    strict = write_params(tmp_path / "strict.yaml", select={"max_p95_latency_ms": 10, "max_size_mb": 20})
    assert main([*args, "--output", str(tmp_path / "select2"), "--params", str(strict)]) == 1
    err = capsys.readouterr().err
    assert "refusing to promote 'distilled'" in err and "below 0.7950" in err
    assert not (tmp_path / "select2").exists()

    bad = write_params(tmp_path / "bad.yaml", select={"tolerance": 2})
    assert main([*args, "--output", str(tmp_path / "select3"), "--params", str(bad)]) == 2
