"""Training: losses, optimiser, and the training engine (paper Sec. 4 recipes)."""
