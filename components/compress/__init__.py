"""compress: int8, pruned and distilled variants of the fine-tuned classifier."""
