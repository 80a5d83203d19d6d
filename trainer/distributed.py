"""Data-parallel training under `torchrun`: the process group comes from the environment torchrun sets.

`WORLD_SIZE > 1` starts a process group (NCCL on CUDA, gloo on CPU); each rank trains on its own
shard of every global batch (`trainer.data.BatchPlan`); DDP averages gradients; only rank 0
writes files.

    torchrun --nproc_per_node 2 -m trainer.cli fit --dataset latest --out runs/x

FSDP (a model too big for one GPU) is not part of the bundled loop: export the run
(`trainer fit --backend export`) and train it with TRL under accelerate's FSDP2 configuration,
`accelerate launch --config_file trainer/recipes/accelerate/fsdp2.yaml -m trainer.external_trl runs/x`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's `value`, in rank order (just `[value]` when not distributed)."""
        if not self.distributed:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def broadcast(self, value: Any) -> Any:
        """Rank 0's `value` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, value: float) -> float:
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_world() -> World:
    """This process's place: rank and world size from torchrun's environment (a single process without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return World(rank=rank, world_size=world_size, device=device)
