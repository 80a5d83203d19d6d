"""The trainer: fine-tunes a base model on a certified release, and evaluates it."""
