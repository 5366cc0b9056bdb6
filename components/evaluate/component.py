"""Kubeflow component for evaluate: the same entry as ``python -m components.evaluate``."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def evaluate(
    pretrained: Input[Model],
    tokenized: Input[Dataset],
    finetuned: Input[Model],
    variants: Input[Model],
    data: Input[Dataset],
    sft: Input[Model],
    params: dict,
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
):
    """Perplexity on held-out text; quality, latency and size of the fine-tuned model, each compressed
    variant and the TF-IDF baseline on the test split; the generative (QA) table of the sft generator,
    its int8 variant, the pretrained GPT and the frequent-candidate baseline (qa.json, qa_table.md,
    generations.jsonl)."""
    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "evaluate",
        params,
        metrics,
        inputs=[pretrained, tokenized, finetuned, variants, data, sft],
        outputs=[evaluation],
        pretrained=pretrained.path,
        tokenized=tokenized.path,
        finetuned=finetuned.path,
        task=a.path(data, a.TASK),
        variants=variants.path,
        sft=sft.path,
        qa=a.path(data, a.QA),
        output=evaluation.path,
    )
