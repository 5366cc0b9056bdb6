"""Params of the evaluate stage (stdlib only: imported by the params loader of every stage)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from components.common.params import check_positive

SECTION = "evaluate"


@dataclass(frozen=True)
class QAParams:
    """``evaluate.qa``: the generative evaluation on the QA test split (needs ``--sft`` and ``--qa``).
    Defaults keep it to seconds on the CPU demo; raise ``max_questions`` on real hardware."""

    enabled: bool = True  # run it when --sft and --qa are given (flag)
    split: Literal["train", "valid", "test"] = "test"  # qa.jsonl split to score (name)
    max_questions: int = 32  # first questions of the split scored, in file order; 0 = all (questions)
    batch_size: int = 8  # prompts per batched greedy generation call (prompts)
    max_new_tokens: int = 0  # most generated tokens per answer; 0 = the sft folder's generator.json (tokens)
    # Each GPT's perplexity over the first of the stage's held-out windows: a budget of its own, since
    # three more GPTs over evaluate.max_tokens would cost three times the stage's perplexity pass.
    perplexity_tokens: int = (
        4096  # held-out tokens scored per GPT, whole windows, at least one; 0 = no perplexity (tokens)
    )

    def __post_init__(self) -> None:
        check_positive(f"{SECTION}.qa", batch_size=self.batch_size)
        for key in ("max_questions", "max_new_tokens", "perplexity_tokens"):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.qa.{key}: must be >= 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class Params:
    """The ``evaluate`` section of params.yaml. Defaults are the CPU demo (about a minute)."""

    max_tokens: int = 65536  # most test-split tokens scored for perplexity, from the start (tokens)
    window: int = 0  # perplexity window length, 0 = the GPT's seq_length (tokens)
    batch_size: int = 8  # perplexity windows per forward pass (windows)
    eval_batch_size: int = 128  # reviews per forward pass of the classifier (examples)
    task_split: Literal["train", "valid", "test"] = "test"  # task.jsonl split to score (name)
    cpu_threads: int = 2  # torch CPU threads, fixed for reproducible sums; 0 = torch default (threads)
    calibration_bins: int = 10  # equal-width confidence bins of the expected calibration error (bins)
    latency_requests: int = 100  # single-review requests timed per model, after 5 warm-up ones (requests)
    throughput_examples: int = (
        512  # test reviews scored in batches of eval_batch_size for throughput (examples)
    )
    baseline: bool = True  # also train and score the TF-IDF + logistic regression baseline (flag)
    baseline_ngram_max: int = 2  # TF-IDF word n-grams from 1 to this (words)
    baseline_min_df: int = 2  # ignore n-grams in fewer train reviews than this (reviews)
    baseline_c: float = 4.0  # inverse L2 regularisation strength of the logistic regression (1/penalty)
    qa: QAParams = field(default_factory=QAParams)  # the generative (QA) evaluation (section)

    def __post_init__(self) -> None:
        check_positive(
            SECTION,
            max_tokens=self.max_tokens,
            batch_size=self.batch_size,
            eval_batch_size=self.eval_batch_size,
            calibration_bins=self.calibration_bins,
            latency_requests=self.latency_requests,
            throughput_examples=self.throughput_examples,
            baseline_ngram_max=self.baseline_ngram_max,
            baseline_min_df=self.baseline_min_df,
            baseline_c=self.baseline_c,
        )
        if self.window < 0 or self.cpu_threads < 0:
            key = "window" if self.window < 0 else "cpu_threads"
            raise ValueError(f"{SECTION}.{key}: must be >= 0, got {getattr(self, key)!r}")
