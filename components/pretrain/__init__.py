"""pretrain: train a megatron-core GPT on the tokenize stage's indexed datasets."""
