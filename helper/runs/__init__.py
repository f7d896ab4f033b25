"""Run storage: checkpoints written atomically, the run lock, the run folder."""
