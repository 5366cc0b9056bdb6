"""deploy, the generative part: the chosen generator folder into the bundle, smoke-tested.

``bundle_generator(source, bundle_dir, reference, decision)`` copies select's ``generator/`` (a
generator folder, C2: model.json, checkpoint/, tokenizer.json, generator.json naming the
quantization it is served with) to ``bundle_dir`` byte for byte, loads the copy through
``llm.generator.load_generator`` (the server's loader) and runs one greedy generation:

- the prompt is the first row of ``reference`` (evaluate's generations.jsonl: the float model's
  test outputs, copied by select), else a fixed prompt;
- a float bundle (quantization ``none``) must reproduce the reference output exactly (greedy
  decoding is deterministic; ``max_new_tokens`` = the reference's generated tokens), otherwise
  ``ReleaseError``; an int8 bundle's output is recorded with whether it agrees, since dynamic int8
  is a different computation than the reference's float one and may pick other tokens;
- a bundle that fails to load, or whose version differs from its source's, is refused.

It returns release.json's ``generator`` entry (version, quantization, the files' sha256, the QA
figures of the choice from select's decision.json, the smoke test) and the timings (seconds).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

SMOKE_PROMPT = "Passage: The film opened in Paris.\nQuestion: The film opened in @placeholder.\nAnswer:"


class GeneratorReleaseError(RuntimeError):
    """The generator cannot be released (does not load, or does not reproduce its evaluation)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_row(path: str | Path | None) -> dict[str, Any] | None:
    if path is None or not Path(path).is_file():
        return None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return json.loads(line)
    return None


def bundle_generator(
    source: str | Path,
    bundle_dir: str | Path,
    reference: str | Path | None = None,
    decision: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Copy, load and smoke-test the generator (see the module doc): (release.json's entry, timings)."""
    from llm.generator import generator_files, generator_version, load_generator

    source, bundle_dir = Path(source), Path(bundle_dir)
    version = generator_version(source)
    for path in generator_files(source):
        target = bundle_dir / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    start = time.perf_counter()
    generator = load_generator(bundle_dir)
    load_s = time.perf_counter() - start
    if generator.version != version:
        raise GeneratorReleaseError(
            f"{bundle_dir}: copied generator hashes to {generator.version}, source to {version}"
        )
    row = _first_row(reference)
    prompt = row["prompt"] if row else SMOKE_PROMPT
    params = generator.default_params(temperature=0.0)
    if row:
        params = generator.default_params(temperature=0.0, max_new_tokens=max(int(row["tokens_out"]), 1))
    (out,), result = generator.generate([prompt], params, truncate=True)
    agrees = (out.text == row["output"]) if row else None
    smoke = {
        "prompt_from": "reference" if row else "fixed",
        "output": out.text,
        "tokens_out": len(out.generation.tokens),
        "finish_reason": out.generation.finish_reason,
        "agrees_with_reference": agrees,
    }
    if row and generator.quantization == "none" and not agrees:
        raise GeneratorReleaseError(
            f"{source}: the loaded float generator answers {out.text!r} where evaluate's reference says "
            f"{row['output']!r} (greedy); refusing to release a generator that does not reproduce its evaluation"
        )
    chosen = {}
    if decision is not None and Path(decision).is_file():
        chosen = json.loads(Path(decision).read_text(encoding="utf-8")).get("generator") or {}
    qa = {
        k: chosen.get(k)
        for k in (
            "chosen",
            "objective",
            "score",
            "exact_match",
            "f1",
            "ms_per_token",
            "tokens_per_s",
            "perplexity",
            "baseline",
        )
        if k in chosen
    }
    entry = {
        "version": generator.version,
        "quantization": generator.quantization,
        "files": {p.relative_to(bundle_dir).as_posix(): _sha256(p) for p in generator_files(bundle_dir)},
        "qa": qa or None,
        "smoke": smoke,
    }
    # Wall-clock figures go to metrics.json only: release.json stays byte-identical across runs.
    return entry, {"load_seconds": load_s, "smoke_seconds": result.seconds}
