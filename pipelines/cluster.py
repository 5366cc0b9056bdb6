"""Cluster settings of the Kubeflow pipeline (pipelines/cluster.yaml), loaded strictly."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from components.common.params import from_dict

CLUSTER_FILE = Path(__file__).with_name("cluster.yaml")


@dataclass(frozen=True)
class Cluster:
    image: str = "llm-production-line:0.1.0"  # project image of every component (name:tag)
    data_lake_secret: str = "data-lake-credentials"  # secret with the S3 credentials and endpoint (name)
    checkpoint_pvc: str = "llm-checkpoints"  # PVC for training checkpoints (name)
    checkpoint_mount: str = "/mnt/checkpoints"  # mount path of that PVC (path)
    shm_size: str = "16Gi"  # in-memory /dev/shm on training pods (Kubernetes quantity)
    io_retries: int = 3  # retries of data-lake steps (count)
    io_retry_backoff: str = "60s"  # first backoff between retries (duration)


def load_cluster(path: str | Path = CLUSTER_FILE) -> Cluster:
    """The settings from ``path``; the LLM_LINE_IMAGE environment variable overrides ``image``."""
    cluster = from_dict(Cluster, yaml.safe_load(Path(path).read_text()) or {}, "cluster")
    if os.environ.get("LLM_LINE_IMAGE"):
        cluster = replace(cluster, image=os.environ["LLM_LINE_IMAGE"])
    return cluster
