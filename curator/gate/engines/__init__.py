"""How the gate's checks can run (`ENGINES`), and the engines that run them beyond one process (Ray)."""

ENGINES = ("memory", "stream", "ray")  # how the checks run: see `curator.gate.pipeline`, `curator.gate.stream`, `ray_engine`
