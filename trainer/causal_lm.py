"""The training forward pass: the decoder's final hidden states, then cross-entropy at labelled positions only."""
from __future__ import annotations

import torch
from peft import PeftModel
from transformers import PreTrainedModel

from curator.errors import CuratorError
from trainer.loss import labelled_cross_entropy


def causal_lm_of(model: torch.nn.Module) -> PreTrainedModel:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def final_hidden_states(lm: PreTrainedModel, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
    """The decoder's output (after its final norm), without the LM head.

    No attention mask: padding and packed conversations are told apart by `position_ids` restarting
    at 0. Without a KV cache (`use_cache=False`) transformers then builds the block-diagonal mask.
    """
    return lm.get_decoder()(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state


class LabelledLoss(torch.nn.Module):
    """Wraps a causal LM (LoRA-adapted or not); `forward` returns `scale` × the summed CE over labelled positions.

    The decoder runs without the LM head; `trainer.loss.labelled_cross_entropy` projects only the
    labelled positions, in chunks. Being one module, it is what DDP or FSDP wraps.
    """

    def __init__(self, model: torch.nn.Module, chunk_tokens: int):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        head = causal_lm_of(model).get_output_embeddings()
        if getattr(head, "bias", None) is not None:
            raise CuratorError("the chunked loss supports LM heads without bias only")

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, targets: torch.Tensor,
                scale: float) -> torch.Tensor:
        lm = causal_lm_of(self.model)
        return labelled_cross_entropy(
            final_hidden_states(lm, input_ids, position_ids),
            lm.get_output_embeddings().weight,
            targets,
            chunk_tokens=self.chunk_tokens,
            softcap=getattr(lm.config, "final_logit_softcapping", None),
            scale=scale,
        )
