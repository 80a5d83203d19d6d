"""Engines that run the gate's checks beyond one process (Ray)."""

ENGINES = ("memory", "stream", "ray")  # how the checks run: see `curator.gate.pipeline`, `curator.gate.stream`, `ray_engine`
