"""deploy: turn the chosen model folder into a release bundle the model server loads.

The bundle is what a Kubernetes model server (or ``make serve``) mounts: the model files, copied
byte for byte, and ``release.json`` naming the version (the content hash the server reports in
every response), the file hashes and where the model came from. Before the bundle is written the
model is loaded through the server's own loader and asked to label the reference texts; a model
that fails to load, or whose labels disagree with the evaluation's, is refused, so a broken
release never reaches the server.

Outputs (one folder, written atomically):
- ``model/``        the model folder's files (``llm.formats.model_files``): classifier.json,
                    model.safetensors and tokenizer.json (a GPT classifier) or vocabulary.json (the
                    TF-IDF baseline); either kind loads through ``llm.served.load_model``
- ``generator/``    the chosen generator folder (select's), when one is shipped
- ``release.json``  {version, kind, files: {name: sha256}, labels, smoke: {...}, dataset: {version, files},
  generator: {version, quantization, files, qa, smoke} | null}
- ``roi.json``      {version, model, variant, roi}: the return on investment of the released model
  (select's decision.json ``roi`` block: training cost, serving estimate, quality against the
  previous version and the baseline, USD per macro-F1 point; None without a decision), what the
  continuous monitor shows beside its live cost. Apart from release.json, which stays the same
  bytes for the same release: its figures are wall-clock ones.
- ``inference_service.yaml``  the release as a KServe InferenceService (``components.deploy.kserve``):
  the project image running ``python -m serving`` on the bundle, downloaded from ``storage_uri``
- ``metrics.json``  version agreement and load time
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from components.common.artifacts import (
    DATASET,
    GENERATOR_DIR,
    INFERENCE_SERVICE,
    MODEL_DIR,
    NOT_SHIPPED,
    RELEASE,
    ROI,
)
from components.common.entry import InputError
from components.common.io import read_json, read_jsonl, write_json
from components.common.metrics import write_metrics
from components.deploy.params import Params

log = logging.getLogger("deploy")


class ReleaseError(RuntimeError):
    """The model cannot be released (does not load, or disagrees with its evaluation)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def release_roi(version: str, decision: str | None) -> dict[str, Any]:
    """``roi.json``: the released ``version`` with select's ``roi`` block from ``decision`` (its
    decision.json; None or no block: ``roi`` is None and ``note`` says why)."""
    chosen = read_json(decision) if decision and Path(decision).is_file() else {}
    block = chosen.get("roi")
    return {
        "version": version,
        "model": chosen.get("chosen"),
        "variant": chosen.get("variant"),
        "roi": block,
        "note": "select's decision.json roi block" if block else "no roi block in select's decision.json",
    }


def run(
    model: str,
    output: str,
    params: Params,
    reference: str | None = None,
    dataset: str | None = None,
    *,
    image: str,
    storage_uri: str,
    prediction_log: str,
    data_lake_secret: str | None = None,
    generator: str | None = None,
    generations: str | None = None,
    decision: str | None = None,
) -> dict[str, Any]:
    """Bundle ``model`` (a model folder of either kind) into ``output``, with its InferenceService.

    ``image``: the project image the InferenceService runs (name:tag). ``storage_uri``: where this
    bundle lies in the data lake, for KServe's storage initializer (the KFP output artifact's URI;
    under DVC, where the bundle is published). ``prediction_log``: the URI the server logs to.
    ``data_lake_secret``: the Kubernetes secret with the lake's AWS_* keys (None = none).

    ``dataset``: ingest's output folder; its ``dataset.json`` (the raw data's content hashes) is
    recorded in release.json, so the served version traces back to its exact data.
    ``reference``: JSONL with {text, prediction} (evaluate's predictions.jsonl); the first
    ``params.smoke_examples`` texts are labelled by the loaded model and must match exactly.

    ``generator``: select's ``generator/`` (a generator folder), bundled as ``generator/`` and
    smoke-tested by ``components.deploy.generator.bundle_generator`` against ``generations``
    (select's generations.jsonl), with the QA figures of ``decision`` (select's decision.json);
    None, or a path where select wrote no generator (none shipped), releases the classifier alone
    (release.json's ``generator`` is null).
    """
    from components.common.io import atomic_output_dir
    from components.deploy.kserve import inference_service, write_inference_service
    from llm.formats import GENERATOR_FILE, model_files, model_kind
    from llm.served import load_model, model_version

    missing = [
        k
        for k, v in (("image", image), ("storage_uri", storage_uri), ("prediction_log", prediction_log))
        if not v
    ]
    if missing:
        raise InputError(f"deploy: {', '.join(missing)} required (the InferenceService needs them)")
    source = Path(model)
    version = model_version(source)
    files = model_files(source)
    with atomic_output_dir(output) as tmp:
        bundle = tmp / MODEL_DIR
        bundle.mkdir()
        for name in files:
            shutil.copyfile(source / name, bundle / name)
        start = time.perf_counter()
        served = load_model(bundle)
        load_s = time.perf_counter() - start
        if served.version != version:
            raise ReleaseError(f"{output}: copied model hashes to {served.version}, source to {version}")
        smoke: dict[str, Any] = {"examples": 0, "agreement": None}
        if reference is not None and params.smoke_examples > 0:
            rows = []
            for row in read_jsonl(reference):
                rows.append(row)
                if len(rows) == params.smoke_examples:
                    break
            got = served.predict([r["text"] for r in rows]).labels
            agree = sum(g == r["prediction"] for g, r in zip(got, rows, strict=True)) / max(len(rows), 1)
            smoke = {"examples": len(rows), "agreement": agree}
            if agree < 1.0:
                raise ReleaseError(
                    f"{model}: the loaded model labels {agree:.1%} of {len(rows)} reference texts as evaluate did;"
                    " refusing to release a model that does not reproduce its evaluation"
                )
        release = {
            "version": version,
            "kind": model_kind(bundle),
            "files": {name: _sha256(bundle / name) for name in files},
            "labels": served.labels,
            "smoke": smoke,
            "dataset": read_json(Path(dataset) / DATASET) if dataset else None,
            "generator": None,
        }
        generator_timing: dict[str, float] = {}
        if generator is not None and (Path(generator) / GENERATOR_FILE).is_file():
            from components.deploy.generator import bundle_generator

            release["generator"], generator_timing = bundle_generator(
                generator, tmp / GENERATOR_DIR, generations, decision
            )
        elif generator is not None:
            # select shipped none: the bundle's generator/ carries its reason (what DVC tracks).
            if (Path(generator) / NOT_SHIPPED).is_file():
                (tmp / GENERATOR_DIR).mkdir()
                shutil.copyfile(Path(generator) / NOT_SHIPPED, tmp / GENERATOR_DIR / NOT_SHIPPED)
            log.info(
                "deploy: no generator at %s (select shipped none); releasing the classifier alone", generator
            )
        # Lineage: the release carries the dataset version (KFP copies it into the artifact's
        # metadata). No path of this machine is recorded: the same release gives the same bytes.
        write_json(tmp / RELEASE, release)
        write_json(tmp / ROI, release_roi(version, decision))
        manifest = inference_service(
            params,
            version=version,
            image=image,
            storage_uri=storage_uri,
            prediction_log=prediction_log,
            data_lake_secret=data_lake_secret or "",
            model_dir=MODEL_DIR,
            generator_dir=GENERATOR_DIR if release["generator"] else "",
        )
        write_inference_service(tmp / INFERENCE_SERVICE, manifest)
        metrics = write_metrics(
            tmp,
            {
                "smoke_examples": smoke["examples"],
                "smoke_agreement": smoke["agreement"],
                "load_seconds": load_s,
                "dataset_version": (release["dataset"] or {}).get("version"),
                "generator_shipped": release["generator"] is not None,
                **(
                    {
                        "generator_version": release["generator"]["version"],
                        "generator_quantization": release["generator"]["quantization"],
                        "generator_smoke_agrees": release["generator"]["smoke"]["agrees_with_reference"],
                        "generator_load_seconds": generator_timing["load_seconds"],
                        "generator_smoke_seconds": generator_timing["smoke_seconds"],
                    }
                    if release["generator"]
                    else {}
                ),
            },
        )
    log.info("deploy: released model %s to %s", version, output)
    return metrics
