"""Launching runs: the local and SLURM schedulers, co-trained BCS phases, the search rule."""
