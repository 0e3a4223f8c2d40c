"""Training and evaluation: rain synthesis, datasets, losses, metrics, trainer."""
