"""Text generation on the megatron-core GPT: incremental decoding with a key/value cache.

``generate(model, prompts, params)`` decodes a batch of token-id prompts of any lengths, greedily
or by sampling (temperature, top-k, top-p; one seeded ``torch.Generator`` per prompt, so samples
are reproducible by seed and independent of torch's global RNG), until each prompt meets the end
token, a stop sequence or ``max_new_tokens``. It returns the new tokens of every prompt, why each
stopped, and the timings the server and the monitor report (time to first token, latency per
generated token). ``generate_text`` is the same on strings, through the project's tokenizer.

The key/value cache is megatron-core's own: a ``StaticInferenceContext`` passed to
``GPTModel.forward(inference_context=...)``, the mechanism megatron's text generation controller
drives. The prompt is run once (prefill); every later step feeds only the newest token, and each
attention layer appends its key/value to the context's per-layer buffers and attends over them.
That path needs nothing from Transformer Engine or flash-attention (``flash_decode`` stays off),
so it runs with the local layer spec and ``SDPAttention`` on CPU and on GPUs: after the prompt,
megatron hands the core attention the whole cached key/value range with ``AttnMaskType.no_mask``
and our mask (None, or the padding mask below), which ``SDPAttention`` honours.

Prompts of different lengths are left-padded to one width. Each row's position ids start at 0 at
its first real token, and a boolean mask (megatron's convention: True = masked out) hides the
padding keys from every query, so each row computes what it would compute alone (equal up to
floating-point summation order). A padding query attends to itself only, which keeps its row of
the softmax finite (a fully masked row would give NaNs that the cached values would carry on).

``use_cache=False`` is the reference: every step recomputes the whole prefix with the plain
causal forward, with the same masks, positions and sampling. Greedy decoding gives the same tokens
both ways (tested), and the benchmark compares their speed.

Single model-parallel rank only (TP = PP = 1): with TP > 1 the logits are vocabulary shards.
Prompts of different lengths need a core attention that reads the padding mask (the local spec);
with Transformer Engine's attention, equal-length prompts only (refused otherwise).

Speed on CPU (bench/generate_decoding.py): a cached step of the demo model (4 x 256) costs about
4.3 ms at batch 1, of which the weights' matrix products are about 0.75 ms; the rest is the Python
of megatron's modules (about 70 module calls and 37 autograd-Function applications per step, paid
even under no_grad). So the cache's gain at batch 1 is bounded by that fixed cost, not by the
prefix it saves. ``torch.inference_mode`` would trim ~8% but leaks inference tensors into caches
that later training reuses (megatron's RoPE lru_cache, our causal-mask cache), so it is not used.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from components.common.params import check_fraction, check_positive
from llm.gpt.masks import causal_inputs
from llm.gpt.model import _without_output_layer

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# The params.yaml section that will hold ``GenerateParams`` (shared by evaluate and the server).
SECTION = "generate"

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class GenerateParams:
    """Decoding settings. ``temperature`` 0 is greedy (argmax; top_k, top_p and seed unused)."""

    max_new_tokens: int = (
        64  # tokens generated per prompt at most; prompt + this must fit seq_length (tokens)
    )
    temperature: float = 0.0  # softmax temperature; 0 = greedy, 1 = the model's distribution (unitless, >= 0)
    top_k: int = 0  # sample among the k most likely tokens only; 0 = no limit (tokens)
    top_p: float = (
        1.0  # nucleus: sample among the most likely tokens holding this much mass; 1 = no limit (0-1, > 0)
    )
    seed: int = 0  # seed of prompt i's sampling generator is seed + i (integer; same seed -> same samples)
    stop: list[str] = field(
        default_factory=list
    )  # texts that end a generation, matched on decoded output (strings)

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "top_k", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{SECTION}.{name}: expected int, got {type(value).__name__} {value!r}")
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{SECTION}.{name}: expected float, got {type(value).__name__} {value!r}")
        check_positive(SECTION, max_new_tokens=self.max_new_tokens, top_p=self.top_p)
        check_fraction(SECTION, top_p=self.top_p)
        if self.temperature < 0:
            raise ValueError(f"{SECTION}.temperature: must be >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_k < 0:
            raise ValueError(f"{SECTION}.top_k: must be >= 0 (0 = no limit), got {self.top_k!r}")
        if self.seed < 0:
            raise ValueError(f"{SECTION}.seed: must be >= 0, got {self.seed!r}")
        if not isinstance(self.stop, list | tuple) or not all(isinstance(s, str) and s for s in self.stop):
            raise ValueError(f"{SECTION}.stop: expected a list of non-empty strings, got {self.stop!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass(frozen=True)
class Generation:
    """What one prompt produced."""

    tokens: list[int]  # new token ids; a matched stop sequence included, the end token not
    finish_reason: FinishReason  # eos: the end token; stop: a stop sequence; length: max_new_tokens
    stop: str | tuple[int, ...] | None  # the stop sequence that matched (text or token ids), else None
    prompt_tokens: int  # length of the prompt (tokens)


@dataclass(frozen=True)
class GenerateResult:
    """A batch's generations, in prompt order, and its timings (seconds of wall clock)."""

    generations: list[Generation]
    time_to_first_token_s: float  # call start -> first new token of every prompt (prefill + sample)
    per_token_latency_s: float  # mean time of one decoding step after the first token (0 if none)
    seconds: float  # the whole call
    steps: int  # decoding steps run (the first token included)

    @property
    def new_tokens(self) -> int:
        """Tokens generated for all prompts (the end tokens counted: each one cost a step)."""
        return sum(len(g.tokens) + (g.finish_reason == "eos") for g in self.generations)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def timings(self) -> dict[str, float]:
        """The figures a server logs or a monitor watches, as a flat dict."""
        return {
            "time_to_first_token_s": self.time_to_first_token_s,
            "per_token_latency_s": self.per_token_latency_s,
            "seconds": self.seconds,
            "new_tokens": float(self.new_tokens),
            "tokens_per_s": self.tokens_per_s,
        }


# --- sampling ------------------------------------------------------------------------------------


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """``logits`` (..., V) with every token outside the top-k and outside the nucleus set to -inf.

    top-p (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration"): keep the smallest
    set of most likely tokens whose probability sums to at least ``top_p``; the most likely token is
    always kept. Applied after top-k, as in most implementations.
    """
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Mass of the tokens strictly more likely than each one: drop a token once that reaches top_p.
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _next_tokens(
    logits: torch.Tensor, params: GenerateParams, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token per row (B,) from last-position logits (B, V) in fp32."""
    if params.greedy:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(filter_logits(logits / params.temperature, params.top_k, params.top_p), dim=-1)
    # One draw per row from the row's own generator: a prompt's samples do not depend on the
    # other prompts of the batch.
    return torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])


# --- masks and positions ------------------------------------------------------------------------


def _padded_inputs(ids: torch.Tensor, pad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Position ids (B, T) and attention mask for the whole left-padded batch ``ids`` (B, T);
    ``pad`` (B,) counts each row's padding. The mask is a (B, 1, T, T) boolean mask (True =
    masked) when any row is padded, else the shared causal mask (the kernel's causal path)."""
    b, t = ids.shape
    if not bool(pad.any()):
        return causal_inputs(ids)
    idx = torch.arange(t, device=ids.device)
    positions = (idx.unsqueeze(0) - pad.unsqueeze(1)).clamp(min=0)
    is_pad = idx.unsqueeze(0) < pad.unsqueeze(1)  # (B, T) over keys
    future = idx.unsqueeze(0) > idx.unsqueeze(1)  # (T, T): key j after query i
    mask = future.unsqueeze(0) | is_pad.unsqueeze(1)  # (B, T, T)
    # A padding query sees itself only: its softmax row stays finite.
    mask = mask & ~torch.eye(t, dtype=torch.bool, device=ids.device).unsqueeze(0)
    return positions, mask.unsqueeze(1)


# --- the loop ------------------------------------------------------------------------------------


def _uncached_last_logits(model, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor):
    """Logits (B, V) at the last position by the plain forward (no inference context): the whole
    decoder over every position, the output layer on the last one only, as the cached path does
    (megatron's ``materialize_only_last_token_logits``), so the two differ only in the prefix."""
    with _without_output_layer(model):
        hidden = model(ids, positions, mask)  # (T, B, H) after the final layernorm
    weight = model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights else None
    out, _ = model.output_layer(hidden[-1:], weight=weight)  # (1, B, V)
    return out[0]


def _check_model_parallel() -> None:
    from megatron.core import parallel_state

    tp = parallel_state.get_tensor_model_parallel_world_size()
    pp = parallel_state.get_pipeline_model_parallel_world_size()
    if tp != 1 or pp != 1:
        raise NotImplementedError(
            f"generate: runs on one model-parallel rank (TP = PP = 1), got TP={tp} PP={pp}"
        )


def _honours_padding_masks(model) -> bool:
    """True when the core attention applies an arbitrary boolean mask (megatron's own
    DotProductAttention and our SDPAttention do; Transformer Engine's causal kernel does not)."""
    from megatron.core.transformer.dot_product_attention import DotProductAttention

    return all(
        isinstance(layer.self_attention.core_attention, DotProductAttention) for layer in model.decoder.layers
    )


def _ends_with(seq: list[int], tail: tuple[int, ...]) -> bool:
    return len(seq) >= len(tail) and tuple(seq[len(seq) - len(tail) :]) == tail


def generate(
    model,
    prompts: Sequence[Sequence[int]],
    params: GenerateParams | None = None,
    *,
    eos_id: int | None = None,
    stop_ids: Sequence[Sequence[int]] = (),
    decode: Callable[[list[int]], str] | None = None,
    pad_id: int = 0,
    vocab_size: int | None = None,
    seeds: Sequence[int] | None = None,
    use_cache: bool = True,
) -> GenerateResult:
    """Generate continuations of token-id ``prompts`` (each non-empty) with a megatron GPTModel.

    Args:
        model: a megatron-core ``GPTModel`` (``llm.gpt.build_gpt`` / ``load_pretrained``); put in
            eval mode for the call, its mode restored after. The runtime must be initialised.
        prompts: token ids per prompt; lengths may differ. Each prompt's length plus
            ``params.max_new_tokens`` must fit the model's ``seq_length`` (its position table),
            else ValueError naming ``max_new_tokens``.
        params: decoding settings (default: greedy, 64 tokens).
        eos_id: the end token (the tokenizer's ``<|endoftext|>``); generation stops there and the
            token is not returned. None = no end token.
        stop_ids: token-id sequences that end a generation when the new tokens end with one.
        decode: token ids -> text; needed for ``params.stop`` (text stop sequences are matched on
            the decoded new tokens, so they are found whatever token boundaries the model chose).
        pad_id: the id fed at padding positions (masked out; any valid id works).
        vocab_size: the tokenizer's vocabulary; logits of the padding rows of the embedding table
            at and above it are never chosen. None = every row of the model.
        seeds: one sampling seed per prompt; None = ``params.seed + i`` for prompt ``i``.
        use_cache: True = megatron's key/value cache (the prefix is computed once); False = the
            reference that recomputes the whole prefix at every step.

    Returns a ``GenerateResult``: one ``Generation`` per prompt, in order, and the timings.
    """
    params = params or GenerateParams()
    if params.stop and decode is None:
        raise ValueError(f"{SECTION}.stop: text stop sequences need decode= (token ids -> text)")
    if not prompts:
        raise ValueError("prompts: expected at least one prompt, got none")
    seq_length = int(model.max_sequence_length)
    vocab = int(model.vocab_size)
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(
                f"prompts[{i}]: empty prompt; start it with at least one token (e.g. the eod id)"
            )
        if len(p) + params.max_new_tokens > seq_length:
            raise ValueError(
                f"{SECTION}.max_new_tokens: prompts[{i}] has {len(p)} tokens; {len(p)} + "
                f"max_new_tokens {params.max_new_tokens} exceeds the model's seq_length {seq_length}"
            )
        if min(p) < 0 or max(p) >= vocab:
            raise ValueError(f"prompts[{i}]: token ids must be in [0, {vocab}), got {min(p)}..{max(p)}")
    stops = [tuple(int(t) for t in s) for s in stop_ids]
    if any(len(s) == 0 for s in stops):
        raise ValueError("stop_ids: every stop sequence needs at least one token")
    if seeds is not None and len(seeds) != len(prompts):
        raise ValueError(f"seeds: expected one per prompt ({len(prompts)}), got {len(seeds)}")
    _check_model_parallel()
    if len(set(len(p) for p in prompts)) > 1 and not _honours_padding_masks(model):
        raise NotImplementedError(
            "prompts: prompts of different lengths need an attention core that reads the padding "
            "mask (the local layer spec's SDPAttention); Transformer Engine's causal attention "
            "ignores it, so generate equal-length groups separately"
        )

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _decode(
                model, prompts, params, eos_id, stops, decode, pad_id, vocab_size, seeds, use_cache
            )
    finally:
        model.train(was_training)


def _decode(
    model,
    prompts: Sequence[Sequence[int]],
    params: GenerateParams,
    eos_id: int | None,
    stops: list[tuple[int, ...]],
    decode: Callable[[list[int]], str] | None,
    pad_id: int,
    vocab_size: int | None,
    seeds: Sequence[int] | None,
    use_cache: bool,
) -> GenerateResult:
    from megatron.core.inference.contexts import StaticInferenceContext

    start = time.perf_counter()
    device = next(model.parameters()).device
    b = len(prompts)
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    pad = torch.tensor([width - n for n in lengths], device=device)
    ids = torch.full((b, width), pad_id, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long, device=device)
    padded = bool(pad.any())
    generators = []
    if not params.greedy:
        for i in range(b):
            g = torch.Generator(device=device)
            g.manual_seed(int(seeds[i]) if seeds is not None else params.seed + i)
            generators.append(g)

    out: list[list[int]] = [[] for _ in range(b)]
    reasons: list[FinishReason | None] = [None] * b
    matched: list[str | tuple[int, ...] | None] = [None] * b
    context = None
    if use_cache:
        context = StaticInferenceContext(max_batch_size=b, max_sequence_length=width + params.max_new_tokens)

    def last_logits(step_ids: torch.Tensor, total: int) -> torch.Tensor:
        """Logits (B, V) at the last position, after the step's new tokens ``step_ids`` (B, S);
        ``total`` = tokens in the sequence so far (padding included)."""
        if context is None:  # reference: the whole sequence so far, from scratch
            positions, mask = _padded_inputs(step_ids, pad)
            return _uncached_last_logits(model, step_ids, positions, mask)
        if context.sequence_len_offset == 0:  # prefill: the padded prompts
            positions, mask = _padded_inputs(step_ids, pad)
        else:  # one new token per row; its key joins the cache, padding keys stay masked
            positions = (torch.full((b, 1), total - 1, device=device) - pad.unsqueeze(1)).clamp(min=0)
            mask = None
            if padded:
                keys = torch.arange(total, device=device).unsqueeze(0) < pad.unsqueeze(1)
                mask = keys[:, None, None, :]
        logits = model(step_ids, positions, mask, inference_context=context, runtime_gather_output=True)
        context.increment_sequence_len_offset(step_ids.shape[1])
        context.enable_decode_mode()
        return logits[:, -1, :]

    seq = ids
    step_input = ids
    first_token_s = 0.0
    steps = 0
    while True:
        logits = last_logits(step_input, seq.shape[1]).float()
        if vocab_size is not None and vocab_size < logits.shape[-1]:
            logits[:, vocab_size:] = float("-inf")
        nxt = _next_tokens(logits, params, generators)
        new = nxt.tolist()  # also waits for the device: the timings below are real
        steps += 1
        if steps == 1:
            first_token_s = time.perf_counter() - start
        for i, tok in enumerate(new):
            if reasons[i] is not None:
                continue
            if eos_id is not None and tok == eos_id:
                reasons[i] = "eos"
                continue
            out[i].append(tok)
            hit = next((s for s in stops if _ends_with(out[i], s)), None)
            if hit is None and params.stop:
                text = decode(out[i])
                hit = next((s for s in params.stop if s in text), None)
            if hit is not None:
                reasons[i], matched[i] = "stop", hit
            elif len(out[i]) >= params.max_new_tokens:
                reasons[i] = "length"
        if all(r is not None for r in reasons):
            break
        # Finished rows keep decoding (their tokens are dropped): the batch stays rectangular.
        step_input = nxt.unsqueeze(1)
        seq = torch.cat([seq, step_input], dim=1)
        if context is None:
            step_input = seq
    seconds = time.perf_counter() - start
    generations = [
        Generation(tokens=out[i], finish_reason=reasons[i], stop=matched[i], prompt_tokens=lengths[i])
        for i in range(b)
    ]
    return GenerateResult(
        generations=generations,
        time_to_first_token_s=first_token_s,
        per_token_latency_s=(seconds - first_token_s) / (steps - 1) if steps > 1 else 0.0,
        seconds=seconds,
        steps=steps,
    )


# --- text ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextGeneration:
    """One prompt's text continuation (cut before a matched text stop sequence)."""

    text: str
    generation: Generation


def generate_text(
    model,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    params: GenerateParams | None = None,
    *,
    use_cache: bool = True,
    seeds: Sequence[int] | None = None,
) -> tuple[list[TextGeneration], GenerateResult]:
    """``generate`` on strings with the project's tokenizer (``llm.tokenizer``): the prompt is
    encoded as data text, generation ends at ``<|endoftext|>`` or a ``params.stop`` text, and
    ``<pad>`` fills the padding. Returns the texts (cut before the stop text) and the raw result."""
    from llm.tokenizer import special_ids

    params = params or GenerateParams()
    special = special_ids(tokenizer)

    def decode(token_ids: list[int]) -> str:
        return tokenizer.decode(token_ids, skip_special_tokens=False)

    encoded = [tokenizer.encode(p).ids for p in prompts]
    result = generate(
        model,
        encoded,
        params,
        eos_id=special["eod_id"],
        decode=decode,
        pad_id=special["pad_id"],
        vocab_size=tokenizer.get_vocab_size(),
        seeds=seeds,
        use_cache=use_cache,
    )
    texts = []
    for g in result.generations:
        text = decode(g.tokens)
        if isinstance(g.stop, str):
            text = text[: text.index(g.stop)]
        texts.append(TextGeneration(text=text, generation=g))
    return texts, result


def params_dict(params: GenerateParams) -> dict[str, Any]:
    """The params as a plain dict (for logs and metrics)."""
    return dataclasses.asdict(params)
