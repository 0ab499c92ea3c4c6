"""Dynamic max completion length (RLRF, appendix C.3) for TRL's ``GRPOTrainer``.

A fixed ``max_completion_length`` sized for the longest SVG of the dataset makes every rollout of a
batch of short icons pay for the worst case, and one sized for the typical SVG truncates the long
ones. RLRF instead caps each step's rollouts at the longest reference SVG of that step's batch: here
``min(max_completion_length, max(floor, longest + margin))``, in the policy's own tokens.

TRL reads the cap at every generate call (``generation_config.max_new_tokens`` on the transformers
path, ``vllm_generation.max_completion_length`` on vLLM), so setting both just before the base
``_generate_and_score_completions`` runs changes what it generates without touching the rest of
the step. Every rank takes the maximum over all ranks (vLLM server/colocate generate one batch).
``GRPOConfig.max_completion_length`` stays the cap and the loss normaliser.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import GRPOTrainer


class DynamicLengthGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose per-step generation cap follows the batch's longest reference SVG.

    Args:
        length_floor: the smallest cap a step gets (a batch of tiny SVGs still leaves room).
        length_margin: tokens allowed beyond the longest reference.
        reference_column: the dataset column with the ground-truth SVG code.
        *args, **kwargs: ``GRPOTrainer``'s.
    """

    def __init__(
        self,
        *args: Any,
        length_floor: int = 64,
        length_margin: int = 32,
        reference_column: str = "svg",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if length_floor < 1 or length_margin < 0:
            raise ValueError("length_floor must be at least 1 and length_margin at least 0")
        self.length_floor, self.length_margin, self.reference_column = length_floor, length_margin, reference_column
        self.length_cap = int(self.args.max_completion_length)  # type: ignore[attr-defined]  # a GRPOConfig
        self.generation_caps: list[int] = []  # the cap of each generation batch, in order
        self._token_counts: dict[str, int] = {}

    def step_cap(self, references: list[str]) -> int:
        """This rank's cap for a batch with these reference SVGs."""
        longest = max((self._tokens(svg) for svg in references if svg), default=0)
        return min(self.length_cap, max(self.length_floor, longest + self.length_margin))

    def _tokens(self, svg: str) -> int:
        count = self._token_counts.get(svg)
        if count is None:
            count = len(self._tokenizer(svg, add_special_tokens=False)["input_ids"])
            if len(self._token_counts) < 100_000:
                self._token_counts[svg] = count
        return count

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        local = self.step_cap([row.get(self.reference_column) or "" for row in inputs])
        cap = int(self.accelerator.gather(torch.tensor([local], device=self.accelerator.device)).max().item())
        if getattr(self, "generation_config", None) is not None:
            self.generation_config.max_new_tokens = cap
        if getattr(self, "vllm_generation", None) is not None:
            self.vllm_generation.max_completion_length = cap
        self.generation_caps.append(cap)
        mode = "train" if self.model is not None and self.model.training else "eval"
        self._metrics[mode]["completions/max_length_cap"].append(float(cap))
        return super()._generate_and_score_completions(inputs)
