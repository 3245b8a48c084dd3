"""Train state, pure steps, the loop, checkpoints, metrics writers, mesh helpers."""
