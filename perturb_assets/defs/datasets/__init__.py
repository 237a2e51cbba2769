"""Dataset layer: raw data, normalised expression, split, pseudo-bulk and DE genes."""
