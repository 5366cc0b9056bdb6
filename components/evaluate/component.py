"""Kubeflow component for evaluate."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def evaluate(
    pretrained: Input[Model],
    tokenized: Input[Dataset],
    finetuned: Input[Model],
    variants: Input[Model],
    data: Input[Dataset],
    params: dict,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
):
    """Perplexity on held-out text; quality, latency and size of the fine-tuned model, each compressed
    variant and the TF-IDF baseline on the test split."""
    import os

    from components.common.kfp import log_metrics, stage_params
    from components.evaluate.core import run

    result = run(
        pretrained=pretrained.path,
        tokenizer=tokenized.path,
        finetuned=finetuned.path,
        task=os.path.join(data.path, "task.jsonl"),
        candidates=variants.path,
        output=evaluation.path,
        params=stage_params("evaluate", params),
    )
    log_metrics(metrics, result)
