"""Params of the deploy stage (stdlib only: imported by the params loader of every stage). The
model server's own settings (request limits, micro-batching, log flushing) are not here: they are
the ``serving`` section, owned by ``serving.settings``, and read by the server process.

The KServe keys (name, resources, replicas, canary) are here, not in ``serving``: they say how the
release is rolled out on a cluster, which is what this stage writes (the InferenceService), and the
server process never reads them."""

from __future__ import annotations

import re
from dataclasses import dataclass

SECTION = "deploy"
# A Kubernetes quantity ("500m", "2", "1.5", "4Gi", "512M"): a decimal number and an optional suffix.
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
# KServe names the predictor's Knative service "<name>-predictor" (a DNS-1035 label, 63 at most).
NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 45


@dataclass(frozen=True)
class Params:
    """The ``deploy`` section of params.yaml."""

    smoke_examples: int = 64  # reference texts the released model must label as evaluate did (examples)
    service_name: str = (
        "llm-sentiment"  # the KServe InferenceService's name (DNS-1035 label, at most 45 characters)
    )
    cpu_request: str = "1"  # CPU the server pod requests (Kubernetes quantity: cores, or m for millicores)
    cpu_limit: str = "2"  # most CPU the server pod may use (Kubernetes quantity)
    memory_request: str = "2Gi"  # memory the server pod requests (Kubernetes quantity: bytes, Mi/Gi)
    memory_limit: str = (
        "4Gi"  # most memory the server pod may use; above it the pod is killed (Kubernetes quantity)
    )
    min_replicas: int = 1  # fewest server pods the autoscaler keeps; 0 = scale to zero when idle (pods)
    max_replicas: int = 3  # most server pods the autoscaler starts (pods)
    canary_traffic_percent: int = 100  # share of requests a new release gets while the previous one takes the rest; 100 = no canary (percent)
    service_account: str = ""  # service account of the server pods, whose S3 secret lets KServe's storage initializer read the lake; "" = the namespace default (name)

    def __post_init__(self) -> None:
        if self.smoke_examples < 0:
            raise ValueError(f"{SECTION}.smoke_examples: must be >= 0, got {self.smoke_examples!r}")
        if not NAME.match(self.service_name) or len(self.service_name) > MAX_NAME:
            raise ValueError(
                f"{SECTION}.service_name: must be a DNS-1035 label of at most {MAX_NAME} characters"
                f" (lower-case letters, digits, '-'), got {self.service_name!r}"
            )
        for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            if not QUANTITY.match(getattr(self, key)):
                raise ValueError(
                    f"{SECTION}.{key}: must be a Kubernetes quantity (e.g. 500m, 2, 4Gi), got {getattr(self, key)!r}"
                )
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError(
                f"{SECTION}.max_replicas: must be >= 1 and >= min_replicas >= 0,"
                f" got min_replicas={self.min_replicas!r}, max_replicas={self.max_replicas!r}"
            )
        if not 0 <= self.canary_traffic_percent <= 100:
            raise ValueError(
                f"{SECTION}.canary_traffic_percent: must be within [0, 100], got {self.canary_traffic_percent!r}"
            )
