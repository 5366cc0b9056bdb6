"""evaluate: perplexity of the pretrained GPT and classification metrics of the fine-tuned model."""
