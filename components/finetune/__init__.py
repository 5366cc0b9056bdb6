"""finetune: a sentiment classifier on top of the pretrained megatron GPT."""
