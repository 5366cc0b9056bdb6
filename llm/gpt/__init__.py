"""The shared megatron-core GPT: shape, builder, checkpoints, runtime and CPU support.

Used by pretrain, finetune, evaluate and the model server. Importing this package is cheap and
does nothing; megatron is imported when a function needs it.
"""

from llm.gpt.cpu_compat import apply_cpu_compat
from llm.gpt.masks import causal_inputs
from llm.gpt.model import (
    CHECKPOINT_DIR,
    MODEL_FILE,
    GPTShape,
    build_gpt,
    hidden_states,
    load_checkpoint,
    load_pretrained,
    logits,
    save_checkpoint,
    token_losses,
)
from llm.gpt.runtime import (
    free_port,
    init_runtime,
    megatron_runtime,
    shutdown_runtime,
    under_torchrun,
)

__all__ = [
    "CHECKPOINT_DIR",
    "MODEL_FILE",
    "GPTShape",
    "apply_cpu_compat",
    "build_gpt",
    "causal_inputs",
    "free_port",
    "hidden_states",
    "init_runtime",
    "load_checkpoint",
    "load_pretrained",
    "logits",
    "megatron_runtime",
    "save_checkpoint",
    "shutdown_runtime",
    "token_losses",
    "under_torchrun",
]
