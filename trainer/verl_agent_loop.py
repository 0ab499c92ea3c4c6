"""verl >= 0.9: the training step for the reward, through verl's own agent-loop extension point.

verl's trainer puts the step in the rollout batch's ``meta_info["global_steps"]``, but its agent
loops see only the sample's columns, so ``compute_score`` never learns the step and warm-up
schedules stay at step 0. ``StepAgentLoopManager`` (``actor_rollout_ref.rollout.agent.
agent_loop_manager_class``) runs verl's own ``AgentLoopWorker`` with one addition: every rollout's
``extra_fields`` get ``global_step``, before verl scores it. verl's reward loop merges
``extra_fields`` into ``extra_info`` (the ``naive`` manager's ``tool_extra_fields``), where
``trainer.verl`` reads it. Any agent loop works (single-turn, tool); imports verl, so only here.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import ray
from verl.experimental.agent_loop import AgentLoopManager, AgentLoopWorker

_step: ContextVar[int | None] = ContextVar("rlrf_global_step", default=None)


class StepAgentLoopWorker(AgentLoopWorker):
    """verl's agent-loop worker, recording the trainer's step in each rollout's ``extra_fields``."""

    async def _run_agent_loop(self, sampling_params: dict[str, Any], trajectory: dict[str, Any], **kwargs: Any) -> Any:
        # each rollout runs in its own asyncio task, so the context variable is this rollout's alone
        step = trajectory.get("step")
        token = _step.set(int(step) if step is not None and int(step) >= 0 else None)  # -1: no step given
        try:
            return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)
        finally:
            _step.reset(token)

    async def _agent_loop_postprocess(self, output: Any, validate: bool, **kwargs: Any) -> Any:
        step = _step.get()
        if step is not None:
            output.extra_fields["global_step"] = step
        return await super()._agent_loop_postprocess(output, validate, **kwargs)


class StepAgentLoopManager(AgentLoopManager):
    """verl's ``AgentLoopManager`` with ``StepAgentLoopWorker`` actors (verl's own hook for it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.agent_loop_workers_class = ray.remote(StepAgentLoopWorker)
        super().__init__(*args, **kwargs)
