"""Engines that run the gate's checks beyond one process (Ray)."""
