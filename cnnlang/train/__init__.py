"""Training: losses, metrics, optimisers, schedules, checkpoints and the training loop."""
