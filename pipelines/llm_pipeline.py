"""The DAG as a Kubeflow Pipelines v2 pipeline.

Each pipeline parameter named like a stage (``ingest``, ``clean`` ...) carries that stage's
params.yaml section as a dict; ``pipelines.compile`` fills the defaults from params.yaml through
the same strict loader, and each component validates its dict again with it at run time.
"""

from __future__ import annotations

from kfp import dsl

from components.clean import component as clean_c
from components.evaluate import component as evaluate_c
from components.finetune import component as finetune_c
from components.ingest import component as ingest_c
from components.monitor import component as monitor_c
from components.pretrain import component as pretrain_c
from components.tokenize import component as tokenize_c

PIPELINE_NAME = "llm-production-line"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Raw text to a monitored sentiment model: ingest, Beam clean, tokenize, megatron-core "
    "pretrain, finetune, evaluate, Evidently monitor.",
)
def llm_pipeline(
    news_uri: str,
    reviews_uri: str,
    ingest: dict,
    clean: dict,
    tokenize: dict,
    pretrain: dict,
    finetune: dict,
    evaluate: dict,
    monitor: dict,
):
    ingest_task = ingest_c.ingest(news=news_uri, reviews=reviews_uri, params=ingest)
    clean_task = clean_c.clean(data=ingest_task.outputs["data"], params=clean)
    tokenize_task = tokenize_c.tokenize(cleaned=clean_task.outputs["cleaned"], params=tokenize)
    pretrain_task = pretrain_c.pretrain(tokenized=tokenize_task.outputs["tokenized"], params=pretrain)
    finetune_task = finetune_c.finetune(
        pretrained=pretrain_task.outputs["pretrained"],
        tokenized=tokenize_task.outputs["tokenized"],
        data=ingest_task.outputs["data"],
        params=finetune,
    )
    evaluate_task = evaluate_c.evaluate(
        pretrained=pretrain_task.outputs["pretrained"],
        tokenized=tokenize_task.outputs["tokenized"],
        finetuned=finetune_task.outputs["finetuned"],
        data=ingest_task.outputs["data"],
        params=evaluate,
    )
    monitor_c.monitor(
        evaluation=evaluate_task.outputs["evaluation"], data=ingest_task.outputs["data"], params=monitor
    )
