"""Kubeflow component for report: the same entry as ``python -m components.report``; its page is
also the run's last HTML artifact, which the Kubeflow UI shows."""

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.common.kfp import stage_component


@stage_component
def report(
    data: Input[Dataset],
    cleaned: Input[Dataset],
    tokenized: Input[Dataset],
    pretrained: Input[Model],
    finetuned: Input[Model],
    generator: Input[Model],
    variants: Input[Model],
    evaluation: Input[Dataset],
    selection: Input[Model],
    release: Input[Model],
    reports: Input[Dataset],
    params: dict,
    run_report: Output[Dataset],
    page: Output[HTML],
    metrics: Output[Metrics],
):
    """Every stage's output -> ``run_report`` (report.html, metrics.json); ``page``: the same
    report.html, for the UI's HTML viewer."""
    import shutil

    from components.common import artifacts as a
    from components.common.kfp import enter

    enter(
        "report",
        params,
        metrics,
        inputs=[data],
        outputs=[run_report],
        ingest=data.path,
        clean=cleaned.path,
        tokenize=tokenized.path,
        pretrain=pretrained.path,
        finetune=finetuned.path,
        sft=generator.path,
        compress=variants.path,
        evaluate=evaluation.path,
        select=selection.path,
        deploy=release.path,
        monitor=reports.path,
        output=run_report.path,
    )
    shutil.copyfile(a.path(run_report, a.REPORT_HTML), page.path)
