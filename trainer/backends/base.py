"""The backend interface and backend discovery through the `instruct_curator.trainer_backends` entry points.

The CLI verifies the release and makes the run directory; a backend then builds its components
(`prepare`), trains (`fit`) and writes its artefacts (`save`). A third-party package registers a
backend under the same entry-point group and `trainer fit --backend NAME` picks it up. Under
`torchrun` every rank runs the same calls; only rank 0 (`world.is_main`) writes files. What `save`
reports lands in the run's `run.json` (`artefacts`); `trainer eval` loads the weights named there.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from curator.errors import CuratorError
from trainer.config import TrainConfig
from trainer.distributed import World

ENTRY_POINT_GROUP = "instruct_curator.trainer_backends"


@dataclass(frozen=True)
class FitResult:
    steps: int  # optimiser steps taken by this backend (0 for one that only exports)
    first_loss: float | None
    final_loss: float | None
    tokens: int
    trained_tokens: int
    seconds: float
    trainable_params: int
    device: str
    dtype: str
    data_stats: dict
    packing_efficiency: float | None = None
    resumed_from_step: int | None = None
    final_eval_loss: float | None = None
    world_size: int = 1
    weights_sha256_by_rank: list[str] = field(default_factory=list)
    chat_template: dict | None = None  # `ChatTemplate.describe()` of the template trained with (or exported)


StepCallback = Callable[[dict], None]


class Backend(ABC):
    """Trains a base model on a release's train split and writes the result into a run directory."""

    @abstractmethod
    def prepare(
        self,
        config: TrainConfig,
        train_records: list[dict],
        eval_records: list[dict],
        run_dir: Path,
        *,
        world: World,
        resume: bool = False,
    ) -> None:
        """Load the model and tokenizer, tokenise the data, build the optimiser: everything `fit` needs.

        With `resume`, continue from the newest checkpoint in `run_dir`.
        """

    @abstractmethod
    def fit(self, on_step: StepCallback) -> FitResult:
        """Run `config.steps` optimiser steps; call `on_step` with each step's metrics."""

    @abstractmethod
    def save(self) -> dict[str, str]:
        """Write the trained artefacts into the run directory; return {artefact: relative path}.

        `trainer eval` understands `tokenizer` (with the chat template trained with) plus `adapter` (peft,
        over the base model) or `model` (whole weights); other names are listed on the model card.
        """


def available_backends() -> dict[str, EntryPoint]:
    """Installed backends by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_backend(name: str) -> Backend:
    """A fresh instance of the backend registered as `name`."""
    found = available_backends()
    if name not in found:
        raise CuratorError(f"no trainer backend {name!r}; installed: {sorted(found) or 'none'}")
    backend_class = found[name].load()
    if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
        raise CuratorError(f"trainer backend {name!r} ({found[name].value}) is not a trainer.backends.base.Backend")
    return backend_class()
