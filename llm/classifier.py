"""The sentiment classifier: the megatron GPT backbone + pooling + a linear head.

Saved as two files that rebuild it anywhere (evaluate, the model server):

- ``classifier.json``: the GPT shape, labels, max_length, pooling, pad/eod ids, head dropout;
- ``model.safetensors``: the whole classifier's tensors (``backbone.*`` and ``head.*``);
- ``tokenizer.json`` beside them (the pretraining tokenizer, copied by the finetune stage).

That is a ``gpt-classifier`` model folder (``llm.formats``); ``llm.served.load_model`` loads it and
the other kind, the TF-IDF baseline (``llm.baseline``), through one interface.

``load_classifier(directory)`` returns a ``TextClassifier`` with ``predict(texts)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llm.formats import CONFIG_FILE, GPT_CLASSIFIER, TOKENIZER_FILE, WEIGHTS_FILE, model_kind
from llm.gpt import GPTShape, build_gpt, hidden_states
from llm.task_data import encode_texts, pad_batch, sorted_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything needed to rebuild the classifier besides its weights and tokenizer."""

    gpt: GPTShape  # the backbone's shape (as pretrain wrote it in model.json)
    labels: list[str]  # class names, in the order of the head's outputs
    max_length: int  # tokens per text incl. the closing <|endoftext|> (tokens)
    pooling: str  # "mean" (over non-pad tokens) or "last" (the <|endoftext|> position)
    pad_id: int  # token id used for right padding
    eod_id: int  # token id that closes every text
    head_dropout: float = 0.0  # dropout before the head while training (probability)
    # Set by the compress stage only (absent from a plain fine-tuned model's classifier.json):
    variant: str = ""  # how the model was derived: "", "int8", "pruned", "distilled" (name)
    quantization: str = ""  # "" = float weights; "int8-dynamic" = int8 storage + int8 Linear layers (name)

    def to_dict(self) -> dict[str, Any]:
        data = {**dataclasses.asdict(self), "gpt": self.gpt.to_dict()}
        # Keep the finetune stage's classifier.json byte-identical to before these fields existed.
        for key in ("variant", "quantization"):
            if not data[key]:
                del data[key]
        return data

    def to_json(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ClassifierConfig:
        data = json.loads(Path(path).read_text())
        return cls(**{**data, "gpt": GPTShape(**data["gpt"])})


def pool(hidden: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    """Summarise hidden states (B, T, H) of right-padded sequences with ``lengths`` (B,) to (B, H).

    ``mean``: average over the first ``lengths[b]`` positions; ``last``: the state at position
    ``lengths[b] - 1`` (with a causal mask, the only one that has seen the whole text).
    """
    if pooling == "last":
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), lengths - 1]
    if pooling == "mean":
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]  # (B, T)
        summed = (hidden * mask.unsqueeze(-1).to(hidden.dtype)).sum(dim=1)
        return summed / lengths.unsqueeze(-1).to(hidden.dtype)
    raise ValueError(f"unknown pooling {pooling!r}")


class Classifier(torch.nn.Module):
    """GPT backbone -> pooled final-layernorm states -> dropout -> linear head (K logits)."""

    def __init__(self, backbone: torch.nn.Module, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.dropout = torch.nn.Dropout(config.head_dropout)
        self.head = torch.nn.Linear(config.gpt.hidden_size, len(config.labels))

    def features(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, H) of right-padded ``input_ids`` (B, T) with ``lengths`` (B,)."""
        return pool(hidden_states(self.backbone, input_ids), lengths, self.config.pooling)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) from pooled features (B, H)."""
        return self.head(self.dropout(features))

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(input_ids, lengths))


def build_classifier(config: ClassifierConfig, backbone: torch.nn.Module | None = None) -> Classifier:
    """A classifier around ``backbone`` (or a freshly built GPT of ``config.gpt``).

    Needs the megatron runtime (``llm.gpt.init_runtime``). The head is drawn from
    torch's global generator: seed it first for a reproducible head.
    """
    backbone = backbone if backbone is not None else build_gpt(config.gpt)
    # The head follows the backbone's device (build_gpt puts the GPT on the GPU when there is one).
    return Classifier(backbone, config).to(model_device(backbone))


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def tensor_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``model.state_dict()`` (megatron adds ``_extra_state`` entries that are None),
    detached, contiguous and on the CPU, as safetensors stores them."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if torch.is_tensor(v)}


def save_classifier(model: Classifier, directory: str | os.PathLike) -> None:
    """Write ``classifier.json`` and ``model.safetensors`` into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.to_json(directory / CONFIG_FILE)
    # clone(): safetensors refuses tensors that share storage (tied weights, views).
    save_file({k: v.clone() for k, v in tensor_state(model).items()}, str(directory / WEIGHTS_FILE))
    # safetensors creates the file owner-only (0600); the other outputs are world-readable.
    os.chmod(directory / WEIGHTS_FILE, 0o644)


INT8_SCALE_SUFFIX = ".int8_scale"  # safetensors key suffix of the per-row scales of an int8 matrix
QUANTIZATIONS = ("", "int8-dynamic")


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: ``weight`` (R, C) float -> (int8 (R, C), scale (R,) float32) with
    ``weight ~= q * scale[:, None]``; the largest |value| of each row maps to 127."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each int8 matrix ``k`` that has a ``k + INT8_SCALE_SUFFIX`` entry by its float32
    reconstruction (the inverse of ``quantize_rows``); other tensors pass through."""
    out = {}
    for key, value in state.items():
        if key.endswith(INT8_SCALE_SUFFIX):
            continue
        scale = state.get(key + INT8_SCALE_SUFFIX)
        out[key] = value.float() * scale[:, None] if scale is not None else value
    return out


class DynamicInt8Linear(torch.nn.Module):
    """Drop-in for megatron's Column/RowParallelLinear at inference (one process, no tensor
    parallelism): a plain ``nn.Linear`` that ``quantize_dynamic`` turns into an int8 kernel, and the
    megatron return convention ``(output, bias_or_None)`` (bias returned separately when the layer
    was built with ``skip_bias_add``, so the fused bias-dropout-add still sees it)."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        weight = layer.weight.detach()
        bias = getattr(layer, "bias", None)
        self.skip_bias_add = bool(getattr(layer, "skip_bias_add", False))
        keep_bias = bias is not None and not self.skip_bias_add
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=keep_bias)
        self.linear.weight.data.copy_(weight)
        if keep_bias:
            self.linear.bias.data.copy_(bias.detach())
        self.register_buffer(
            "out_bias", bias.detach().clone() if bias is not None and self.skip_bias_add else None
        )

    def forward(
        self, input_: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.linear(input_), self.out_bias


def quantize_dynamic_int8(model: Classifier) -> Classifier:
    """Swap the decoder's megatron linear layers for ``DynamicInt8Linear`` and quantize them with
    per-channel dynamic int8 (CPU, fbgemm): weights int8, activations quantized per batch at run
    time. Attention, norms, embeddings and the head stay float: the head's int8 kernel (K outputs)
    was slower than the float one (27 vs 12 us per call on 2 cores), for no size to speak of."""
    from megatron.core.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear

    model = model.cpu().eval()
    for module in list(model.backbone.decoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ColumnParallelLinear | RowParallelLinear):
                setattr(module, name, DynamicInt8Linear(child))
    return torch.ao.quantization.quantize_dynamic(
        model, {"backbone.decoder": torch.ao.quantization.per_channel_dynamic_qconfig}, inplace=True
    )


def load_weights(model: Classifier, path: str | os.PathLike) -> None:
    """Load ``model.safetensors`` into ``model``; any missing tensor or extra key is an error.
    Int8-stored matrices (with a ``.int8_scale`` entry) are dequantized to float first."""
    from safetensors.torch import load_file

    state = dequantize_state(load_file(str(path)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("_extra_state")]
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing[:5]}, unexpected {unexpected[:5]}")


def trace_for_inference(model: Classifier) -> Any | None:
    """``model``'s forward as a frozen TorchScript trace, or None when the trace does not match.

    One short review spends most of its eager time in Python (megatron's module tree, autograd
    Function wrappers of the tensor-parallel layers) rather than in arithmetic; the trace runs the
    same kernels without it (on 2 cores: float 4.0 -> 2.3 ms, int8 2.7 -> 1.1 ms per review). A trace
    records one input's path, so it is checked against eager on other batch sizes and lengths
    (including the longest) and refused, with a warning, if any logit differs by more than 1e-5.
    """
    import warnings

    config = model.config
    device = model_device(model)
    generator = torch.Generator().manual_seed(0)

    def sample(batch: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(2, config.gpt.vocab_size, (batch, length), generator=generator)
        lengths = torch.randint(1, length + 1, (batch,), generator=generator)
        lengths[0] = length  # the longest row sets the width, as pad_batch does
        return ids.to(device), lengths.to(device)

    model = model.eval()
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about shapes; the checks below decide
            traced = torch.jit.freeze(torch.jit.trace(model, sample(2, min(8, config.max_length))))
            for batch, length in (
                (1, 1),
                (1, config.max_length),
                (3, max(1, config.max_length // 3)),
                (5, 2),
            ):
                inputs = sample(batch, length)
                if not torch.allclose(traced(*inputs), model(*inputs), rtol=0.0, atol=1e-5):
                    raise ValueError(f"logits differ at batch {batch}, length {length}")
    except Exception as exc:  # a model the tracer cannot follow still serves, eagerly
        log.warning("classifier: TorchScript trace refused (%s); running eagerly", exc)
        return None
    return traced


class TextClassifier:
    """A loaded classifier with its tokenizer: ``predict(texts) -> (labels, scores)``.

    ``trace``: on the CPU, run a checked TorchScript trace of the model (``trace_for_inference``);
    the predictions are the eager model's (to 1e-5 in the logits), only faster.
    """

    def __init__(self, model: Classifier, tokenizer: Any, trace: bool = False):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.device = model_device(model)
        # CPU only: on a GPU megatron's fused bias-GeLU / bias-dropout-add are torch.compile'd,
        # which torch.jit.trace refuses (seen on an H200), and Python overhead matters less there.
        self.traced = trace_for_inference(self.model) if trace and self.device.type == "cpu" else None
        self._forward = self.traced if self.traced is not None else self.model

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return encode_texts(self.tokenizer, texts, self.config.max_length, self.config.eod_id)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads per text: the BPE ids after truncation to ``max_length``,
        the closing <|endoftext|> included."""
        return [len(ids) for ids in self.encode(texts)]

    # inference_mode, not no_grad: it also skips autograd's version counters and view tracking,
    # a fixed cost per op that is a visible share of one short review's latency on a CPU.
    @torch.inference_mode()
    def predict_proba(self, texts: Sequence[str], batch_size: int = 128) -> torch.Tensor:
        """Class probabilities (N, K), in the order of ``texts`` and ``labels``."""
        sequences = self.encode(texts)
        probs = torch.zeros(len(sequences), len(self.config.labels))
        for batch in sorted_batches([len(s) for s in sequences], batch_size):
            ids, lengths = pad_batch([sequences[i] for i in batch], self.config.pad_id)
            logits = self._forward(ids.to(self.device), lengths.to(self.device))
            probs[batch] = torch.softmax(logits.float(), dim=-1).cpu()
        return probs

    def predict(self, texts: Sequence[str], batch_size: int = 128) -> tuple[list[str], list[float]]:
        """Predicted label per text and its score (the probability of that label, 0-1)."""
        if not texts:
            return [], []
        scores, index = self.predict_proba(texts, batch_size).max(dim=-1)
        return [self.config.labels[i] for i in index.tolist()], scores.tolist()


def load_classifier(directory: str | os.PathLike, trace: bool = True) -> TextClassifier:
    """Rebuild the classifier saved by the finetune (or compress) stage in ``directory`` (eval
    mode, CPU/GPU as the runtime; an ``int8-dynamic`` model always runs on the CPU), traced for
    inference unless ``trace`` is False (``trace_for_inference``). Starts a single-process
    megatron runtime if none is running (it lives with the process: a model server keeps it
    until exit)."""
    from megatron.core import parallel_state

    from llm.gpt import init_runtime
    from llm.tokenizer import load_tokenizer

    directory = Path(directory)
    kind = model_kind(directory)
    if kind != GPT_CLASSIFIER:
        raise ValueError(
            f"{directory}: a {kind} model folder, not a GPT classifier (llm.served.load_model loads both)"
        )
    if not parallel_state.model_parallel_is_initialized():
        init_runtime()
    config = ClassifierConfig.from_json(directory / CONFIG_FILE)
    if config.quantization not in QUANTIZATIONS:
        raise ValueError(
            f"{directory}: unknown quantization {config.quantization!r} (known: {QUANTIZATIONS})"
        )
    model = build_classifier(config)
    load_weights(model, directory / WEIGHTS_FILE)
    if config.quantization == "int8-dynamic":
        model = quantize_dynamic_int8(model)
    return TextClassifier(model, load_tokenizer(directory / TOKENIZER_FILE), trace=trace)
