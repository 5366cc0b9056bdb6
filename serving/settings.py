"""Settings of the model server: the ``serving`` section of params.yaml (stdlib only: imported by the
params loader of every stage). Host, port, model folder and log URI are not settings: they are
command-line arguments (paths and addresses differ per machine; DESIGN rule 3)."""

from __future__ import annotations

from dataclasses import dataclass

from components.common.params import check_positive

SECTION = "serving"
MIN_JSON_DEPTH = 2  # the requests the server takes nest this deep
MAX_JSON_DEPTH = 256  # well below Python's recursion limit, which the JSON parser spends


@dataclass(frozen=True)
class Settings:
    """The ``serving`` section of params.yaml. Defaults suit the CPU demo model on 2 cores."""

    max_text_chars: int = 5000  # longest text accepted; longer ones get 413 (characters)
    max_batch_texts: int = 64  # most texts in one POST /predict; more get 413 (texts)
    max_body_bytes: int = 1_000_000  # largest request body read; larger ones get 413 (bytes)
    max_json_depth: int = 32  # deepest nesting of JSON arrays/objects in a body; deeper ones get 400 (levels)
    micro_batch_texts: int = 64  # most texts the server groups into one forward pass (texts)
    micro_batch_wait_ms: float = 2.0  # how long a forward pass waits for more requests to group (ms)
    # Past capacity: texts admitted and not yet answered; a /predict that would go over gets 503 with
    # Retry-After at once, so admitted ones keep their latency (256 ~ 1 s of the demo's backlog).
    max_queued_texts: int = 256  # 0 = no bound (texts)
    eval_batch_size: int = 64  # texts per forward pass inside one group (examples)
    # Several workers (serving.workers) split cpu_threads; with 0, one keeps torch's default and
    # several split the cores (Settings.worker_threads).
    cpu_threads: int = 2  # torch intra-op threads for inference, all workers together (threads)
    workers: int = 1  # server processes on one port, one model copy each; 1 = no parent (processes)
    log_flush_rows: int = 2000  # buffered prediction-log rows that trigger a Parquet write (rows)
    log_flush_seconds: float = 5.0  # longest a logged row waits in memory before it is written (seconds)
    shutdown_timeout_s: float = 30.0  # on SIGTERM, longest wait for in-flight requests before exit (seconds)
    feedback_window_requests: int = 100_000  # newest answered requests whose ids /feedback knows (requests)
    max_generate_prompts: int = 16  # most prompts in one POST /generate; more get 413 (prompts)
    max_new_tokens_cap: int = 256  # largest max_new_tokens a /generate request may ask; more get 422 (tokens)
    max_prompt_tokens: int = (
        2048  # longest prompt accepted (also capped by seq_length - max_new_tokens); longer get 413 (tokens)
    )
    generate_batch_prompts: int = 16  # most prompts the server groups into one batched decode (prompts)
    generate_batch_wait_ms: float = 5.0  # how long a batched decode waits for more requests to group (ms)
    max_queued_prompts: int = (
        64  # the same bound for /generate: prompts admitted, not yet answered; 0 = none (prompts)
    )

    def __post_init__(self) -> None:
        check_positive(
            SECTION,
            max_text_chars=self.max_text_chars,
            max_batch_texts=self.max_batch_texts,
            max_body_bytes=self.max_body_bytes,
            micro_batch_texts=self.micro_batch_texts,
            eval_batch_size=self.eval_batch_size,
            log_flush_rows=self.log_flush_rows,
            log_flush_seconds=self.log_flush_seconds,
            shutdown_timeout_s=self.shutdown_timeout_s,
            feedback_window_requests=self.feedback_window_requests,
            max_generate_prompts=self.max_generate_prompts,
            max_new_tokens_cap=self.max_new_tokens_cap,
            max_prompt_tokens=self.max_prompt_tokens,
            generate_batch_prompts=self.generate_batch_prompts,
            workers=self.workers,
        )
        # Each worker needs a thread of its own: fewer threads than workers cannot be split.
        if 0 < self.cpu_threads < self.workers:
            raise ValueError(
                f"{SECTION}.cpu_threads: must be 0 or >= workers ({self.workers}), got {self.cpu_threads!r}"
            )
        # Our bodies nest 2 deep ({"texts": [...]}, [{feedback}, ...]); Python's JSON parser recurses
        # once per level, so a bound near the interpreter's recursion limit (1000) would not protect it.
        if not MIN_JSON_DEPTH <= self.max_json_depth <= MAX_JSON_DEPTH:
            raise ValueError(
                f"{SECTION}.max_json_depth: must be within [{MIN_JSON_DEPTH}, {MAX_JSON_DEPTH}], "
                f"got {self.max_json_depth!r}"
            )
        for key in (
            "micro_batch_wait_ms",
            "cpu_threads",
            "generate_batch_wait_ms",
            "max_queued_texts",
            "max_queued_prompts",
        ):
            if getattr(self, key) < 0:
                raise ValueError(f"{SECTION}.{key}: must be >= 0, got {getattr(self, key)!r}")
        # A bound below the largest request would refuse that request forever, whatever the load.
        for bound, largest in (
            ("max_queued_texts", "max_batch_texts"),
            ("max_queued_prompts", "max_generate_prompts"),
        ):
            if 0 < getattr(self, bound) < getattr(self, largest):
                raise ValueError(
                    f"{SECTION}.{bound}: must be 0 or >= {largest} ({getattr(self, largest)}), "
                    f"got {getattr(self, bound)!r}"
                )

    def worker_threads(self, worker: int, cores: int) -> int:
        """torch threads of worker ``worker`` (0-based) out of ``workers``: ``cpu_threads`` split
        evenly (the first ones take the remainder); with ``cpu_threads`` 0, one worker keeps torch's
        default (0) and several split ``cores`` (the CPUs this process may use), at least 1 each."""
        total = self.cpu_threads if self.cpu_threads > 0 else (0 if self.workers == 1 else cores)
        if total == 0:
            return 0
        share, rest = divmod(total, self.workers)
        return max(1, share + (1 if worker < rest else 0))
