"""deploy: the release bundle is smoke-tested through the server's loader and records its data; its
KServe InferenceService follows the params and KServe's conventions; applying it creates or replaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.common.entry import InputError
from components.common.io import write_json, write_jsonl
from components.common.params import ParamsError, from_dict
from components.deploy.core import ReleaseError
from components.deploy.core import run as deploy_run
from components.deploy.kserve import apply_inference_service, read_inference_service
from components.deploy.params import Params
from llm.served import load_model, model_version
from tests.serving_fixtures import shared_model_dir

KSERVE = {
    "image": "registry.example/llm-production-line:1.2.3",
    "storage_uri": "s3://lake/outputs/deploy",
    "prediction_log": "s3://lake/prediction_log",
    "data_lake_secret": "lake-secret",
}


def run(model: str, output: str, params: Params, **kwargs):
    return deploy_run(model, output, params, **{**KSERVE, **kwargs})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return shared_model_dir(tmp_path_factory)


def _reference(path: Path, model_dir: Path, flip: bool = False) -> Path:
    texts = ["a fine film", "dull and long", "the best acting of the year", "i walked out"]
    labels = load_model(model_dir).predict(texts).labels
    if flip:
        labels = ["positive" if x == "negative" else "negative" for x in labels]
    write_jsonl(
        path,
        [
            {"id": str(i), "text": t, "prediction": p}
            for i, (t, p) in enumerate(zip(texts, labels, strict=False))
        ],
    )
    return path


def test_release_bundle_matches_the_model_and_records_the_dataset(tmp_path: Path, model_dir: Path):
    ingest = tmp_path / "ingest"
    write_json(ingest / "dataset.json", {"version": "abc123", "files": {"raw.csv": "abc123"}})
    out = tmp_path / "deploy"
    metrics = run(
        str(model_dir),
        str(out),
        Params(),
        reference=str(_reference(tmp_path / "ref.jsonl", model_dir)),
        dataset=str(ingest),
    )
    release = json.loads((out / "release.json").read_text())
    assert release["version"] == model_version(model_dir) == load_model(out / "model").version
    assert release["dataset"]["version"] == "abc123"
    assert metrics["smoke_examples"] == 4 and metrics["smoke_agreement"] == 1.0


def test_a_model_that_does_not_reproduce_its_evaluation_is_refused(tmp_path: Path, model_dir: Path):
    out = tmp_path / "deploy"
    reference = _reference(tmp_path / "ref.jsonl", model_dir, flip=True)
    with pytest.raises(ReleaseError, match="refusing to release"):
        run(str(model_dir), str(out), Params(), reference=str(reference))
    assert not out.exists()  # nothing half-released


def test_smoke_examples_must_not_be_negative():
    with pytest.raises(ValueError, match="deploy.smoke_examples"):
        from_dict(Params, {"smoke_examples": -1}, "deploy")


def test_the_inference_service_runs_the_server_on_the_release_as_kserve_expects(tmp_path: Path, model_dir):
    out = tmp_path / "deploy"
    params = Params(cpu_request="500m", memory_limit="3Gi", min_replicas=0, max_replicas=5)
    run(str(model_dir), str(out), params)
    isvc = read_inference_service(out / "inference_service.yaml")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert isvc["metadata"]["name"] == "llm-sentiment"
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("8080", "/metrics")
    assert annotations["llm-production-line/model-version"] == model_version(model_dir)
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 5)
    assert "canaryTrafficPercent" not in predictor  # 100: no canary, KServe's default routing
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["image"] == KSERVE["image"]
    assert container["command"] == ["python", "-m", "serving"]
    args = container["args"]
    assert args[args.index("--model") + 1] == "/mnt/models/model"  # storage initializer's mount
    assert args[args.index("--port") + 1] == "8080" and args[args.index("--host") + 1] == "0.0.0.0"
    assert args[args.index("--log") + 1] == "$(PREDICTION_LOG_URI)"
    env = {e["name"]: e for e in container["env"]}
    assert env["STORAGE_URI"]["value"] == KSERVE["storage_uri"]
    assert env["PREDICTION_LOG_URI"]["value"] == KSERVE["prediction_log"]
    assert env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "lake-secret",
        "key": "AWS_ENDPOINT_URL",
        "optional": True,
    }
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "3Gi"},
    }
    # The same inputs give the same bytes (DVC caches it; parity compares it).
    again = tmp_path / "again"
    run(str(model_dir), str(again), params)
    assert (again / "inference_service.yaml").read_bytes() == (out / "inference_service.yaml").read_bytes()


def test_a_canary_percent_below_100_splits_traffic(tmp_path: Path, model_dir):
    run(str(model_dir), str(tmp_path / "d"), Params(canary_traffic_percent=10))
    isvc = read_inference_service(tmp_path / "d" / "inference_service.yaml")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10


def test_deploy_without_an_image_is_an_input_error(tmp_path: Path, model_dir):
    with pytest.raises(InputError, match="image"):
        run(str(model_dir), str(tmp_path / "d"), Params(), image="")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"cpu_request": "two"}, "deploy.cpu_request: must be a Kubernetes quantity"),
        ({"memory_limit": "4 GB"}, "deploy.memory_limit: must be a Kubernetes quantity"),
        ({"service_name": "LLM_sentiment"}, "deploy.service_name: must be a DNS-1035 label"),
        ({"min_replicas": 4, "max_replicas": 3}, "deploy.max_replicas: must be >= 1 and >= min_replicas"),
        ({"max_replicas": 0}, "deploy.max_replicas"),
        ({"canary_traffic_percent": 101}, "deploy.canary_traffic_percent: must be within [0, 100]"),
        ({"min_replicas": "1"}, "deploy.min_replicas"),
        ({"replicas": 2}, "replicas"),
    ],
)
def test_bad_kserve_params_are_refused_with_the_key(raw: dict, message: str):
    with pytest.raises((ValueError, ParamsError), match=message.replace("[", r"\[").replace("]", r"\]")):
        from_dict(Params, raw, "deploy")


class FakeApi:
    """CustomObjectsApi stand-in: one namespace's InferenceServices by name."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.calls: list[str] = []

    def get(self, namespace: str, name: str):
        return self.objects.get((namespace, name))

    def create(self, namespace: str, manifest: dict):
        self.calls.append("create")
        self.objects[(namespace, manifest["metadata"]["name"])] = {
            **manifest,
            "metadata": {**manifest["metadata"], "resourceVersion": "1"},
        }

    def replace(self, namespace: str, name: str, manifest: dict):
        self.calls.append("replace")
        assert (
            manifest["metadata"]["resourceVersion"]
            == self.objects[(namespace, name)]["metadata"]["resourceVersion"]
        )
        self.objects[(namespace, name)] = {
            **manifest,
            "metadata": {**manifest["metadata"], "resourceVersion": "2"},
        }


def test_apply_creates_the_inference_service_then_replaces_it(tmp_path: Path, model_dir):
    run(str(model_dir), str(tmp_path / "d"), Params())
    path = tmp_path / "d" / "inference_service.yaml"
    api = FakeApi()
    assert apply_inference_service(path, namespace="ml", api=api) == "created"
    assert apply_inference_service(path, namespace="ml", api=api) == "replaced"
    assert api.calls == ["create", "replace"]
    stored = api.objects[("ml", "llm-sentiment")]
    assert stored["metadata"]["namespace"] == "ml"
    assert stored["spec"] == read_inference_service(path)["spec"]


# ---- the generator in the bundle ----------------------------------------------------------------


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    from tests.task_fixtures import make_generator, make_tokenized

    root = tmp_path_factory.mktemp("generator")
    return make_generator(root / "generator", make_tokenized(root / "tokenize"), max_new_tokens=6)


def _generations(path: Path, generator_dir: Path, output: str | None = None) -> Path:
    """A generations.jsonl row as evaluate writes it: the float model's greedy answer to a prompt."""
    from llm.generator import load_generator

    generator = load_generator(generator_dir)
    prompt = "Passage: a fine film, the best acting.\nQuestion: @placeholder acting\nAnswer:"
    (out,), _ = generator.generate([prompt], generator.default_params(), truncate=True)
    row = {
        "id": "q0",
        "prompt": prompt,
        "output": out.text if output is None else output,
        "tokens_in": out.generation.prompt_tokens,
        "tokens_out": len(out.generation.tokens),
        "ms_per_token": 1.0,
        "finish_reason": out.generation.finish_reason,
    }
    write_jsonl(path, [row])
    return path


def test_the_bundle_carries_the_chosen_generator_and_release_json_names_it(
    tmp_path, model_dir, generator_dir
):
    from llm.generator import generator_version, load_generator

    decision = tmp_path / "decision.json"
    write_json(
        decision,
        {
            "generator": {
                "chosen": "sft",
                "objective": "f1",
                "f1": 0.5,
                "exact_match": 0.4,
                "ms_per_token": 3.0,
                "tokens_per_s": 300.0,
                "perplexity": 9.0,
            }
        },
    )
    out = tmp_path / "deploy"
    metrics = run(
        str(model_dir),
        str(out),
        Params(),
        generator=str(generator_dir),
        generations=str(_generations(tmp_path / "gen.jsonl", generator_dir)),
        decision=str(decision),
    )
    release = json.loads((out / "release.json").read_text())
    entry = release["generator"]
    assert entry["version"] == generator_version(generator_dir) == load_generator(out / "generator").version
    assert entry["quantization"] == "none"
    assert entry["qa"]["f1"] == 0.5 and entry["qa"]["chosen"] == "sft"
    assert entry["smoke"]["agrees_with_reference"] is True and entry["smoke"]["prompt_from"] == "reference"
    assert "generator.json" in entry["files"] and any(k.startswith("checkpoint/") for k in entry["files"])
    assert (out / "generator" / "model.json").read_bytes() == (generator_dir / "model.json").read_bytes()
    assert (out / "model" / "classifier.json").is_file()  # the classifier is released beside it
    assert metrics["generator_shipped"] and metrics["generator_smoke_agrees"] is True
    assert "seconds" not in json.dumps(release)  # timings stay out of the deterministic release
    assert "/mnt/models/generator" in (out / "inference_service.yaml").read_text()  # KServe serves it


def test_an_int8_generator_is_released_int8_and_a_float_one_must_reproduce_its_reference(
    tmp_path, model_dir, generator_dir
):
    import shutil

    from llm.generator import read_generator_config, write_generator_config

    int8 = tmp_path / "int8"
    shutil.copytree(generator_dir, int8)
    config = {k: v for k, v in read_generator_config(int8).items() if k not in ("format", "quantization")}
    write_generator_config(int8, **config, quantization="int8-dynamic")
    wrong = _generations(tmp_path / "wrong.jsonl", generator_dir, output="@@ surely not this @@")
    metrics = run(str(model_dir), str(tmp_path / "d1"), Params(), generator=str(int8), generations=str(wrong))
    entry = json.loads((tmp_path / "d1" / "release.json").read_text())["generator"]
    assert entry["quantization"] == "int8-dynamic" and metrics["generator_quantization"] == "int8-dynamic"
    assert entry["smoke"]["agrees_with_reference"] is False and entry["qa"] is None  # recorded, not refused
    from components.deploy.generator import GeneratorReleaseError

    with pytest.raises(GeneratorReleaseError, match="does not reproduce its evaluation"):
        run(
            str(model_dir),
            str(tmp_path / "d2"),
            Params(),
            generator=str(generator_dir),
            generations=str(wrong),
        )
    assert not (tmp_path / "d2").exists()


def test_no_generator_shipped_releases_the_classifier_alone(tmp_path, model_dir):
    metrics = run(
        str(model_dir), str(tmp_path / "deploy"), Params(), generator=str(tmp_path / "select" / "generator")
    )
    assert json.loads((tmp_path / "deploy" / "release.json").read_text())["generator"] is None
    assert not (tmp_path / "deploy" / "generator").exists() and metrics["generator_shipped"] is False
