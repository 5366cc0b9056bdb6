"""serving, POST /generate: a real (tiny, untrained) generator folder beside the tiny classifier, in
process. Bad input is a 4xx whose message names the field; N generations give N rows of the
generations log with exactly contract C4's columns; every response names the generator's version;
concurrent greedy requests share batched decodes (a spy counts the generate calls) and give the
text each gives alone; a server without a generator refuses plainly; /metrics counts the tokens."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from llm.generator import load_generator
from llm.served import load_model
from serving.batcher import GenerationBatcher
from serving.prediction_log import GENERATIONS, PredictionLog, schema
from serving.settings import Settings
from tests.serving_fixtures import shared_model_dir
from tests.task_fixtures import make_generator, make_tokenized

PARAMS = Settings(
    max_text_chars=200,
    max_generate_prompts=4,
    max_new_tokens_cap=16,
    max_prompt_tokens=20,
    generate_batch_wait_ms=1.0,
)
PROMPTS = [
    "good film",
    "the plot was dull and",
    "a story with music",
    "bad",
    "it was very lovely",
    "the actors",
]

C4_COLUMNS = [
    ("request_id", pa.string()),
    ("item", pa.int32()),
    ("ts", pa.timestamp("us", tz="UTC")),
    ("prompt", pa.string()),
    ("output", pa.string()),
    ("tokens_in", pa.int32()),
    ("tokens_out", pa.int32()),
    ("finish_reason", pa.string()),
    ("latency_ms", pa.float64()),
    ("ttft_ms", pa.float64()),
    ("ms_per_token", pa.float64()),
    ("model_version", pa.string()),
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(shared_model_dir(tmp_path_factory), batch_size=16)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("serving-generator"))
    folder = make_generator(root / "generator", make_tokenized(root / "tokenize"))
    return load_generator(folder)


class Spy:
    """Counts the generator's generate calls and the prompts of each."""

    def __init__(self, generator):
        self.generator = generator
        self.real = type(generator).generate
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, prompts, params=None, **kwargs):
        with self.lock:
            self.calls.append(len(prompts))
        return self.real(self.generator, prompts, params, **kwargs)


@pytest.fixture
def spy(generator):
    s = Spy(generator)
    generator.generate = s
    yield s
    del generator.generate


def _client(model, generator, log_uri, params: Settings = PARAMS):
    from fastapi.testclient import TestClient

    from serving.app import create_app

    log = PredictionLog(log_uri, flush_rows=10_000, flush_seconds=60.0)
    return TestClient(create_app(model, params, log, generator=generator), raise_server_exceptions=False)


def _rows(log_uri) -> pa.Table:
    files = sorted(Path(log_uri, GENERATIONS).glob("date=*/part-*.parquet"))
    tables = [pq.read_table(f) for f in files]
    for table in tables:
        assert table.schema.equals(pa.schema(C4_COLUMNS)), table.schema
    return pa.concat_tables(tables) if tables else pa.schema(C4_COLUMNS).empty_table()


def test_the_generations_schema_is_contract_c4():
    assert schema(GENERATIONS).equals(pa.schema(C4_COLUMNS))


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"prompt": "good", "temperature": -1}, 422, "temperature"),
        ({"prompt": "good", "temperature": "hot"}, 422, "temperature"),
        ({"prompt": "good", "temperature": 1e-300}, 422, "temperature must be 0 (greedy) or within"),
        ({"prompt": "good", "temperature": 1e308}, 422, "temperature must be 0 (greedy) or within"),
        ({"prompt": "good", "max_new_tokens": 0}, 422, "max_new_tokens"),
        ({"prompt": "good", "max_new_tokens": 2.5}, 422, "max_new_tokens"),
        ({"prompt": "good", "max_new_tokens": 17}, 422, "max_new_tokens is 17, over the limit of 16"),
        ({"prompt": "good", "top_p": 1.5}, 422, "top_p"),
        ({"prompt": "good", "temperature": 1.0, "top_p": 1e-300}, 422, "top_p must be within [1e-06, 1]"),
        ({"prompt": "good", "top_k": -2}, 422, "top_k"),
        ({"prompt": "good", "seed": -1}, 422, "seed"),
        ({"prompt": "good", "seed": 2**40}, 422, "seed is"),
        ({"prompt": "good", "stop": "\n"}, 422, "stop must be a list"),
        ({"prompt": "good", "stop": ["", "x"]}, 422, "stop[0]"),
        ({"prompt": "good", "beam": 4}, 422, "unknown field 'beam'"),
        ({"prompt": 3}, 422, "prompt must be a string"),
        ({"prompt": ""}, 422, "prompt is empty"),
        ({"prompt": "x" * 201}, 413, "prompt has 201 characters, over the limit of 200"),
        ({"prompt": "good film " * 30}, 413, "prompt has"),  # over max_prompt_tokens (20)
        ({"prompts": ["a", "b", "c", "d", "e"]}, 413, "prompts has 5 items, over the limit of 4"),
        ({"prompts": ["a", 5]}, 422, "prompts[1] must be a string"),
        ({"prompts": []}, 422, "prompts is empty"),
        ({"prompt": "a", "prompts": ["b"]}, 422, 'exactly one of "prompt"'),
        ({"text": "a"}, 422, "unknown field 'text'"),
        ({"prompt": "good", "choices": "Alice"}, 422, "choices must be a list"),
        ({"prompt": "good", "choices": []}, 422, "choices is empty"),
        ({"prompt": "good", "choices": ["Alice", ""]}, 422, "choices[1] is empty"),
        ({"prompt": "good", "choices": ["Alice", "Alice"]}, 422, "choices has repeated items"),
        ({"prompt": "good", "choices": list("abcde")}, 413, "choices has 5 items, over the limit of 4"),
        ({"prompt": "good", "choices": ["a"], "temperature": 1.0}, 422, "decoding fields do not apply"),
        ({"prompt": "good", "choices": ["good film " * 19]}, 413, "no room left for a prompt"),
    ],
)
def test_bad_generate_requests_are_4xx_naming_the_field(model, generator, tmp_path, body, status, field):
    with _client(model, generator, str(tmp_path / "log")) as client:
        response = client.post("/generate", json=body)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]
    assert response.json()["model_version"] == generator.version == response.headers["x-model-version"]
    assert not (tmp_path / "log" / GENERATIONS).exists()  # refused requests are not logged


def test_a_prompt_too_long_for_the_context_names_the_tokens(model, generator, tmp_path):
    # seq_length 32: 16 new tokens leave room for 16 prompt tokens, below max_prompt_tokens (20)
    with _client(model, generator, str(tmp_path / "log")) as client:
        prompt = " ".join(["film"] * 18)
        response = client.post("/generate", json={"prompt": prompt, "max_new_tokens": 16})
    assert response.status_code == 413
    assert "over the limit of 16" in response.json()["error"]


def test_n_generations_give_n_log_rows_with_the_model_version(model, generator, tmp_path, spy):
    log_uri = str(tmp_path / "log")
    with _client(model, generator, log_uri) as client:
        single = client.post("/generate", json={"prompt": "good film"}, headers={"X-Request-ID": "gen-1"})
        batch = client.post("/generate", json={"prompts": PROMPTS[:3], "max_new_tokens": 4})
        sampled = client.post(
            "/generate", json={"prompts": PROMPTS[3:5], "temperature": 1.0, "top_k": 20, "seed": 7}
        )
        health = client.get("/healthz").json()
    responses = [single, batch, sampled]
    for r in responses:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == generator.version == r.headers["x-model-version"]
        assert body["request_id"] == r.headers["x-request-id"]
        assert body["latency_ms"] >= body["ttft_ms"] > 0
        for g in body["generations"]:
            assert set(g) == {"text", "finish_reason", "tokens_in", "tokens_out"}
            assert g["finish_reason"] in ("eos", "stop", "length") and g["tokens_in"] > 0
    assert single.json()["request_id"] == "gen-1"
    assert all(g["tokens_out"] <= 4 for g in batch.json()["generations"])
    assert health["generator_version"] == generator.version and health["model_version"] == model.version

    table = _rows(log_uri)  # the shutdown wrote every buffered row
    assert table.num_rows == 1 + 3 + 2
    rows = table.to_pylist()
    assert {r["model_version"] for r in rows} == {generator.version}
    first = next(r for r in rows if r["request_id"] == "gen-1")
    g = single.json()["generations"][0]
    assert (first["prompt"], first["output"], first["item"]) == ("good film", g["text"], 0)
    assert (first["tokens_in"], first["tokens_out"], first["finish_reason"]) == (
        g["tokens_in"],
        g["tokens_out"],
        g["finish_reason"],
    )
    assert first["latency_ms"] > 0 and first["ttft_ms"] > 0 and first["ms_per_token"] >= 0
    batch_rows = sorted(
        (r for r in rows if r["request_id"] == batch.json()["request_id"]), key=lambda r: r["item"]
    )
    assert [r["prompt"] for r in batch_rows] == PROMPTS[:3]
    assert [r["output"] for r in batch_rows] == [g["text"] for g in batch.json()["generations"]]


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0.01, "top_p": 1e-6},
        {"temperature": 100.0},
        {"temperature": 1.0, "top_k": 2**62},
        {"top_k": 10**30},
        {"seed": 2**32 - 1, "temperature": 1.0},
        {"stop": ["a"] * 4},
    ],
)
def test_extreme_valid_decoding_fields_are_served(model, generator, tmp_path, fields):
    with _client(model, generator, str(tmp_path / "log")) as client:
        response = client.post("/generate", json={"prompts": ["good film", "bad"], **fields})
    assert response.status_code == 200, response.text
    assert len(response.json()["generations"]) == 2


def test_sampling_is_reproducible_by_seed_whatever_the_batch(model, generator, tmp_path):
    body = {"prompts": PROMPTS[:2], "temperature": 1.0, "seed": 11, "max_new_tokens": 6}
    with _client(model, generator, str(tmp_path / "log")) as client:
        alone = client.post("/generate", json=body).json()["generations"]
        again = client.post("/generate", json=body).json()["generations"]
        # prompt i samples with seed + i: the second prompt alone with seed 12 gives the same text
        second = client.post("/generate", json={**body, "prompts": PROMPTS[1:2], "seed": 12}).json()[
            "generations"
        ]
    assert [g["text"] for g in alone] == [g["text"] for g in again]
    assert second[0]["text"] == alone[1]["text"]


def test_concurrent_greedy_requests_are_batched_and_give_the_text_of_one_at_a_time(
    model, generator, tmp_path, spy
):
    slow = Settings(**{**PARAMS.__dict__, "generate_batch_wait_ms": 300.0, "max_generate_prompts": 8})
    slow = Settings(**{**slow.__dict__, "generate_batch_prompts": 8})
    with _client(model, generator, str(tmp_path / "one"), slow) as client:
        alone = [client.post("/generate", json={"prompt": p}).json() for p in PROMPTS]
    assert spy.calls == [1] * len(PROMPTS)
    spy.calls.clear()
    with _client(model, generator, str(tmp_path / "many"), slow) as client:
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            together = list(pool.map(lambda p: client.post("/generate", json={"prompt": p}).json(), PROMPTS))
        metrics = client.get("/metrics").text
    assert sum(spy.calls) == len(PROMPTS) and len(spy.calls) < len(PROMPTS), spy.calls
    assert [r["generations"] for r in together] == [r["generations"] for r in alone]
    calls = next(line for line in metrics.splitlines() if line.startswith("serving_generate_calls_total"))
    assert float(calls.split()[-1]) == len(spy.calls)


def test_generate_without_a_generator_is_refused_plainly(model, tmp_path):
    with _client(model, None, str(tmp_path / "log")) as client:
        response = client.post("/generate", json={"prompt": "good film"})
        health = client.get("/healthz").json()
    assert response.status_code == 503
    assert response.json()["error"].startswith("no generator is loaded")
    assert response.json()["model_version"] == model.version == response.headers["x-model-version"]
    assert health["generator_version"] is None


def test_metrics_show_generated_tokens(model, generator, tmp_path):
    with _client(model, generator, str(tmp_path / "log")) as client:
        bodies = [
            client.post("/generate", json={"prompts": PROMPTS[:2], "max_new_tokens": 5}).json()
            for _ in range(2)
        ]
        client.post("/generate", json={"prompt": "good", "temperature": -1})
        text = client.get("/metrics").text
    values = {
        line.split()[0]: float(line.split()[-1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["serving_generation_requests_total"] == 2.0
    assert values["serving_generation_prompts_total"] == 4.0
    out = sum(g["tokens_out"] + (g["finish_reason"] == "eos") for b in bodies for g in b["generations"])
    assert values["serving_generated_tokens_total"] == out > 0
    assert values["serving_time_to_first_token_seconds_count"] == 2.0
    assert values["serving_generated_tokens_per_second"] > 0
    assert values['serving_requests_total{endpoint="/generate",status="422"}'] == 1.0


def test_the_generation_batcher_groups_by_settings_and_finishes_its_queue_on_close(generator):
    from llm.gpt.generate import GenerateParams

    calls = []

    def fake(prompts, params, seeds=None):
        calls.append((list(prompts), params.temperature, seeds))
        return [f"{p}!" for p in prompts], None

    async def main():
        batcher = GenerationBatcher(fake, max_prompts=3, wait_s=0.01)
        batcher.start()
        greedy, hot = GenerateParams(max_new_tokens=4), GenerateParams(max_new_tokens=4, temperature=1.0)
        jobs = [
            batcher.submit(["a"], greedy),
            batcher.submit(["b"], hot),
            batcher.submit(["c", "d"], greedy),
            batcher.submit(["e"], GenerateParams(max_new_tokens=4, temperature=1.0, seed=5)),
            batcher.submit(["f"], greedy),  # over max_prompts with a, c, d: next decode
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0)
        await batcher.close()  # the queue is drained before the worker stops
        return [t.result().texts for t in tasks]

    results = asyncio.run(main())
    assert results == [["a!"], ["b!"], ["c!", "d!"], ["e!"], ["f!"]]
    assert calls == [(["a", "c", "d"], 0.0, None), (["b", "e"], 1.0, [0, 5]), (["f"], 0.0, None)]


def test_fuzzed_generate_bodies_never_5xx(model, generator, tmp_path):
    import random

    rng = random.Random(14)
    values = [
        None, True, False, 0, 1, -1, 7, 2**31, 2**70, 0.0, 1e-9, 0.5, 1.0, 1.5, 1e9, 1e308, -0.5,
        "", "x", "\n", [], ["\n"], [""], [1], {}, {"a": 1}, "good film",
    ]  # fmt: skip
    fields = ["max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"]
    statuses = []
    with _client(model, generator, str(tmp_path / "log")) as client:
        for _ in range(60):
            body: dict = {"prompt": rng.choice(["good film", "bad plot and", "a"])}
            for name in rng.sample(fields, rng.randint(1, 3)):
                body[name] = rng.choice(values)
            response = client.post("/generate", json=body)
            statuses.append(response.status_code)
            assert response.status_code < 500, (body, response.text)
            if response.status_code >= 400:
                assert response.json()["error"], body
    assert 200 in statuses and any(400 <= s < 500 for s in statuses)


def test_the_kserve_container_passes_the_bundle_generator_when_there_is_one():
    from components.deploy.kserve import server_args

    assert "--generator" not in server_args("/mnt/models/model", "$(LOG)")
    args = server_args("/mnt/models/model", "$(LOG)", generator_dir="/mnt/models/generator")
    assert args[args.index("--generator") + 1] == "/mnt/models/generator"
    from serving.__main__ import parser

    parsed = parser().parse_args(args)  # the server takes the container's args as they are
    assert (parsed.model, parsed.generator) == ("/mnt/models/model", "/mnt/models/generator")


def test_choices_answer_with_the_most_likely_choice_and_are_logged(model, generator, tmp_path):
    log_uri = str(tmp_path / "log")
    choices = ["Alice", "Bob", "the film"]
    with _client(model, generator, log_uri) as client:
        r = client.post("/generate", json={"prompts": PROMPTS[:2], "choices": choices})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == generator.version
    for prompt, row in zip(PROMPTS[:2], body["generations"], strict=True):
        index, _ = generator.choose(prompt, choices)
        assert row["text"] == choices[index] and row["finish_reason"] == "choice"
        assert row["tokens_out"] == generator.count_tokens([generator.choice_text(row["text"])])[0]
    rows = _rows(log_uri).to_pylist()
    assert [(x["prompt"], x["output"], x["finish_reason"]) for x in rows] == [
        (p, g["text"], "choice") for p, g in zip(PROMPTS[:2], body["generations"], strict=True)
    ]
