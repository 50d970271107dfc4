"""Training: the recipe (standard and adversarial), its loop, its resumable state."""
