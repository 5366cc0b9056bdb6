"""Run in the KServe test venv (scripts/kserve_venv.sh), not in .venv: reads an InferenceService YAML,
deserializes it into KServe's own ``V1beta1InferenceService`` model, serializes it back, and prints
the result as JSON on stdout.

A field the models do not know (misspelt, or in the wrong place) is dropped on the way in, so the
printed document differs from the input: tests/pipeline/test_kserve.py compares the two.

The deserializer walks the models' own ``openapi_types`` / ``attribute_map``, resolving type names
in ``kserve.models`` and then ``kubernetes.client.models``: kserve 0.21's ApiClient looks only in
``kserve.models`` and does not parse its own ``Dict[str, str]`` annotations, so it cannot load an
InferenceService with metadata or containers at all. Serializing back is KServe's ApiClient.
"""

from __future__ import annotations

import json
import re
import sys

import kserve.models
import kubernetes.client.models
import yaml
from kserve.api_client import ApiClient

PRIMITIVES = {"str": str, "int": int, "float": float, "bool": bool}


def build(data, type_name: str):
    if data is None:
        return None
    match = re.fullmatch(r"(?:list|List)\[(.*)\]", type_name)
    if match:
        return [build(item, match.group(1)) for item in data]
    match = re.fullmatch(r"(?:dict\(str, (.*)\)|Dict\[str, (.*)\])", type_name)
    if match:
        value_type = match.group(1) or match.group(2)
        return {key: build(value, value_type) for key, value in data.items()}
    if type_name in PRIMITIVES:
        if not isinstance(data, PRIMITIVES[type_name]):
            raise TypeError(f"expected {type_name}, got {data!r}")
        return data
    if type_name == "object":
        return data
    klass = getattr(kserve.models, type_name, None) or getattr(kubernetes.client.models, type_name)
    kwargs = {
        attr: build(data[key], klass.openapi_types[attr])
        for attr, key in klass.attribute_map.items()
        if key in data
    }
    return klass(**kwargs)


def main(path: str) -> int:
    with open(path) as f:
        document = yaml.safe_load(f)
    model = build(document, "V1beta1InferenceService")
    assert isinstance(model, kserve.models.V1beta1InferenceService)
    json.dump(ApiClient().sanitize_for_serialization(model), sys.stdout, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
