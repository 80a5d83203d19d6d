"""The quality gate: checks, expectations and the split that turn run directories into a release."""
