"""The Ray engine on a cluster of two Ray nodes (two raylets on loopback, `ray.cluster_utils.Cluster`, as Ray's own
multi-node tests run), reached the way a user reaches one: `RAY_ADDRESS`. The release equals the in-memory gate's,
and the embedding actors and the dedup checks' bucket tasks ran on both nodes."""
from __future__ import annotations

import os

import pytest

from curator.gate import stream
from curator.gate.engines import ray_engine
from curator.gate.pipeline import run_gate
from test_gate_stream import assert_same_release, semantic_case, watched_embedders


@pytest.fixture
def two_node_cluster(monkeypatch):
    ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    yield ray
    ray.shutdown()
    cluster.shutdown()


def test_ray_engine_on_two_nodes_gives_the_in_memory_release(two_node_cluster, tmp_path, monkeypatch):
    ray = two_node_cluster
    spec, runs, _ = semantic_case(tmp_path, 120, seed=11)
    memory = run_gate(runs, spec, root=tmp_path / "memory")
    made = watched_embedders(monkeypatch, block=16)
    passes, real = [], ray_engine.RayFirstPass
    monkeypatch.setattr(ray_engine, "RayFirstPass", lambda *args: passes.append(real(*args)) or passes[-1])
    monkeypatch.setattr(stream, "CHUNK_ROWS", 8)  # dedup groups checked in many buckets, a Ray task each
    distributed = run_gate(runs, spec, root=tmp_path / "ray", engine="ray")  # connects through RAY_ADDRESS
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    release = assert_same_release(memory.release, distributed.release)
    removed = {c["name"]: c["removed"] for c in release["checks"]}
    assert removed["exact_dedup"] and removed["near_dedup"] and removed["semantic_dedup"]
    assert len(made[0].nodes) == 2 and os.getpid() not in made[0].workers  # the model ran on both nodes
    assert len(passes[0].bucket_nodes) == 2  # so did the exact and near dedup checks, bucket by bucket
