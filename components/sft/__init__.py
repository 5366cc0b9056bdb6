"""sft: supervised fine-tuning of the pretrained GPT on prompt -> response pairs (a generator folder)."""
