"""The library floor: what several stages, the model server and the monitor share.

The megatron-core GPT and its runtime (``llm.gpt``), the tokenizer helpers (``llm.tokenizer``),
the on-disk formats of a tokenized corpus and of a model folder (``llm.formats``), the classifier
and its task data (``llm.classifier``, ``llm.task_data``), the served model (``llm.served``), the
scoring metrics (``llm.scoring``) and drift (``llm.drift``, ``llm.text_features``).

It knows no stage and no orchestrator: nothing here imports ``components.<stage>``, ``pipelines``,
``serving``, ``monitoring`` or kfp. Importing a module does no work.
"""
