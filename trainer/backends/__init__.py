"""Training backends, discovered through the `instruct_curator.trainer_backends` entry-point group."""
