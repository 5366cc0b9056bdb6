"""A generative model folder, loaded for use: what evaluate, deploy's smoke test and the server share.

A generator folder is a pretrained-GPT folder (``model.json`` + ``checkpoint/``, loaded by
``llm.gpt.model.load_pretrained``) with its ``tokenizer.json`` and a ``generator.json``::

    {"format": "gpt-generator", "quantization": "none" | "int8-dynamic", "task": "qa",
     "max_new_tokens": 16, "stop": ["\\n"], "choice_template": " {choice}\\n"}

``choice_template`` is how a choice is written as a response when the model picks among choices
(``Generator.choose``: POST /generate's ``choices``, evaluate's ranked QA answers): for QA, the
response format SFT trained on (a space, the answer, the stop newline). Absent: ``{choice}``.

``quantization: int8-dynamic`` (or ``load_generator(..., quantization="int8-dynamic")``) runs the
decoder's linear layers as PyTorch dynamic int8 kernels on the CPU (weights int8 per output channel,
activations quantized per call), as the classifier's int8 variant does; embeddings, norms,
attention and the output layer stay float. The stored weights stay float: the variant is a way of
running the same checkpoint, so it costs no disk and its version differs only by generator.json.

The runtime: ``load_generator`` starts the single-process megatron runtime if none is running (it
lives until the process exits), as ``llm.served.load_model`` does for the classifier.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from llm.formats import CHECKPOINT_DIR, GENERATOR_FILE, GPT_SHAPE_FILE, TOKENIZER_FILE

FORMAT = "gpt-generator"
QUANTIZATIONS = ("none", "int8-dynamic")
Quantization = Literal["none", "int8-dynamic"]
VERSION_CHARS = 12
DEFAULT_CHOICE_TEMPLATE = "{choice}"


def generator_files(directory: str | os.PathLike) -> list[Path]:
    """The files that define the generator in ``directory`` (their bytes make its version), sorted;
    FileNotFoundError naming the first missing part."""
    directory = Path(directory)
    files = []
    for name in (GPT_SHAPE_FILE, TOKENIZER_FILE, GENERATOR_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory}: no {name} (not a generator folder)")
        files.append(directory / name)
    checkpoint = directory / CHECKPOINT_DIR
    if not checkpoint.is_dir():
        raise FileNotFoundError(f"{directory}: no {CHECKPOINT_DIR}/ (not a generator folder)")
    files += sorted(p for p in checkpoint.rglob("*") if p.is_file())
    return files


def generator_version(directory: str | os.PathLike) -> str:
    """``<first 12 hex of sha256>`` over the relative names and bytes of ``generator_files``."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in generator_files(directory):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:VERSION_CHARS]


def read_generator_config(directory: str | os.PathLike) -> dict[str, Any]:
    """``generator.json`` of ``directory``, checked (format and quantization named on error)."""
    path = Path(directory) / GENERATOR_FILE
    config = json.loads(path.read_text())
    if config.get("format") != FORMAT:
        raise ValueError(f"{path}: format must be {FORMAT!r}, got {config.get('format')!r}")
    if config.get("quantization", "none") not in QUANTIZATIONS:
        raise ValueError(
            f"{path}: quantization must be one of {QUANTIZATIONS}, got {config['quantization']!r}"
        )
    return config


def quantize_generator_int8(model: Any) -> Any:
    """Swap the GPT decoder's megatron linear layers for dynamic int8 ones (CPU, one process)."""
    import torch
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    from llm.classifier import DynamicInt8Linear

    model = model.cpu().eval()
    for module in list(model.decoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ColumnParallelLinear | RowParallelLinear):
                setattr(module, name, DynamicInt8Linear(child))
    return torch.ao.quantization.quantize_dynamic(
        model, {"decoder": torch.ao.quantization.per_channel_dynamic_qconfig}, inplace=True
    )


@dataclass
class Generator:
    """A loaded generator: the GPT, its tokenizer, its settings and its version."""

    model: Any
    tokenizer: Any
    seq_length: int
    version: str
    quantization: Quantization
    config: dict[str, Any]

    def default_params(self, **overrides: Any):
        """The folder's decoding defaults (``max_new_tokens``, ``stop``) with ``overrides``."""
        from llm.gpt.generate import GenerateParams

        base = {k: self.config[k] for k in ("max_new_tokens", "stop") if k in self.config}
        return replace(GenerateParams(**base), **overrides) if overrides else GenerateParams(**base)

    def max_prompt_tokens(self, max_new_tokens: int) -> int:
        """The longest prompt (tokens) that leaves room for ``max_new_tokens`` new ones."""
        return self.seq_length - max_new_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts))]

    def truncate(self, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """Each prompt cut from the left to ``max_prompt_tokens`` tokens (the question at the end of
        a QA prompt is kept; the start of the passage goes first)."""
        limit = self.max_prompt_tokens(max_new_tokens)
        out = []
        for prompt, encoding in zip(prompts, self.tokenizer.encode_batch(list(prompts)), strict=True):
            if len(encoding.ids) <= limit:
                out.append(prompt)
            else:
                start = encoding.offsets[len(encoding.ids) - limit][0]
                out.append(prompt[start:])
        return out

    def score_continuations(
        self, prompt: str, continuations: Sequence[str], batch_size: int = 16
    ) -> list[float]:
        """Log-likelihood (nats, summed over its tokens) of each continuation right after ``prompt``:
        the model used as a scorer, e.g. to choose among a cloze question's candidate entities
        (Hermann et al. 2015's protocol). The prompt is cut from the left so the longest
        continuation fits the context. Sequences are right-padded into batches; with causal
        attention the padding after a continuation cannot change its score."""
        import torch

        from llm.gpt.model import model_device, token_losses

        conts = [e.ids for e in self.tokenizer.encode_batch(list(continuations))]
        if not conts or min(len(c) for c in conts) == 0:
            raise ValueError("score_continuations: every continuation needs at least one token")
        longest = max(len(c) for c in conts)
        if longest >= self.seq_length:
            raise ValueError(
                f"score_continuations: a continuation of {longest} tokens leaves no room for the prompt"
            )
        head = self.tokenizer.encode(self.truncate([prompt], longest)[0]).ids
        if not head:
            raise ValueError("score_continuations: the prompt has no tokens")
        device = model_device(self.model)
        scores: list[float] = []
        with torch.no_grad():
            for start in range(0, len(conts), batch_size):
                batch = conts[start : start + batch_size]
                seqs = [head + c for c in batch]
                width = max(len(q) for q in seqs)
                ids = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
                for i, q in enumerate(seqs):
                    ids[i, : len(q)] = torch.as_tensor(q, device=device)
                # Position t predicts token t + 1: a continuation's tokens are predicted from
                # position len(head) - 1 on.
                losses = token_losses(self.model, ids[:, :-1], ids[:, 1:]).float()
                for i, c in enumerate(batch):
                    scores.append(-float(losses[i, len(head) - 1 : len(head) - 1 + len(c)].sum()))
        return scores

    def choice_text(self, choice: str) -> str:
        """``choice`` as the response text the model is scored on (generator.json's template)."""
        return self.config.get("choice_template", DEFAULT_CHOICE_TEMPLATE).replace("{choice}", choice)

    def choose(self, prompt: str, choices: Sequence[str], batch_size: int = 16) -> tuple[int, list[float]]:
        """The index of the choice the model finds most likely as the response to ``prompt`` (the
        first of a tie), and every choice's log-likelihood (``score_continuations`` of
        ``choice_text``)."""
        scores = self.score_continuations(prompt, [self.choice_text(c) for c in choices], batch_size)
        return max(range(len(scores)), key=scores.__getitem__), scores

    def generate(
        self,
        prompts: Sequence[str],
        params: Any = None,
        *,
        truncate: bool = False,
        use_cache: bool = True,
        seeds: Sequence[int] | None = None,
    ):
        """``llm.gpt.generate.generate_text`` with this generator's model and tokenizer;
        ``truncate`` cuts over-long prompts from the left instead of refusing them."""
        from llm.gpt.generate import generate_text

        params = params or self.default_params()
        if truncate:
            prompts = self.truncate(prompts, params.max_new_tokens)
        return generate_text(self.model, self.tokenizer, prompts, params, use_cache=use_cache, seeds=seeds)


def load_generator(
    directory: str | os.PathLike, quantization: Quantization | None = None, cpu_threads: int = 0
) -> Generator:
    """Load the generator folder ``directory``; ``quantization`` overrides generator.json's."""
    version = generator_version(directory)  # fails fast, naming the folder, on a wrong path
    config = read_generator_config(directory)
    quantization = quantization or config.get("quantization", "none")
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    import torch

    from llm.gpt.model import load_pretrained
    from llm.gpt.runtime import init_runtime
    from llm.tokenizer import load_tokenizer

    if cpu_threads > 0:
        torch.set_num_threads(cpu_threads)
    from megatron.core import parallel_state

    if not parallel_state.model_parallel_is_initialized():
        init_runtime()
    model, shape = load_pretrained(directory)
    if quantization == "int8-dynamic":
        model = quantize_generator_int8(model)
        if config.get("quantization", "none") != quantization:
            version = hashlib.sha256(f"{version}:{quantization}".encode()).hexdigest()[:VERSION_CHARS]
    tokenizer = load_tokenizer(Path(directory) / TOKENIZER_FILE)
    return Generator(
        model, tokenizer, shape.seq_length, version, quantization, {**config, "quantization": quantization}
    )


def write_generator_config(directory: str | os.PathLike, **config: Any) -> Path:
    """Write ``generator.json`` (``format`` set; ``quantization`` defaults to none) into ``directory``."""
    body = {"format": FORMAT, "quantization": "none", **config}
    if body["quantization"] not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {body['quantization']!r}")
    template = body.get("choice_template", DEFAULT_CHOICE_TEMPLATE)
    if not isinstance(template, str) or "{choice}" not in template:
        raise ValueError(f"choice_template must be a string holding {{choice}}, got {template!r}")
    path = Path(directory) / GENERATOR_FILE
    path.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path
