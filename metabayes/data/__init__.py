"""Task distributions for meta-learning."""
