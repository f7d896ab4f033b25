"""The training engine: options, experiment building, the one training loop and its speed paths."""
