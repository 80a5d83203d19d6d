"""The gate's checks, one module each; `curator.gate.pipeline.build_checks` puts them in order from the spec."""
