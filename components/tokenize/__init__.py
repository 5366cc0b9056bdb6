"""tokenize: train a byte-level BPE tokenizer and write megatron-core indexed datasets."""
