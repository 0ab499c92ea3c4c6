"""Runs in .venv-verl (verl 0.9.1), not under pytest: drives verl's own reward code, prints JSON.

``python _verl_driver.py MODE TOKENIZER_DIR CASES_JSON``; the service is at ``RLRF_URL``. Modes:
``config`` (verl's hydra config with trainer/README.md's snippet and CLI overrides), ``loop``
(verl's RewardLoopWorker, reward loop ``naive`` manager), ``batch`` (verl's BatchRewardManager),
``ray`` (verl's RewardLoopManager on a local Ray cluster, plus a 422 raised inside its actor),
``agent`` (the README's agent-loop manager class, loaded as verl's trainer loads it, runs verl's
agent-loop workers and reward loop on Ray, streaming rewards, at ``global_steps`` 0 and 500; only
the LLM server is a stand-in, ``FixedLLM``, since vLLM/SGLang need a GPU).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from verl import DataProto

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(verl.__file__).parent / "trainer" / "config"


def readme_snippets() -> tuple[dict[str, Any], list[str]]:
    """The verl section's YAML block and its command-line overrides, as trainer/README.md shows them."""
    section = REPO.joinpath("trainer/README.md").read_text().split("## verl", 1)[1].split("\n## ", 1)[0]
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    cli = re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    words = cli.replace("\\\n", " ").split()
    overrides = [w for w in words if "=" in w and w.startswith(("reward.", "+actor_rollout_ref.rollout.agent."))]
    return OmegaConf.to_container(OmegaConf.create(yaml)), overrides  # type: ignore[return-value]


def config(tokenizer_dir: str, *, yaml: bool = True) -> Any:
    """verl's ppo_trainer config, as main_ppo composes it, with our snippet on top."""
    snippet, overrides = readme_snippets()
    base = [f"actor_rollout_ref.model.path={tokenizer_dir}", "reward.num_workers=1"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=base + ([] if yaml else overrides))
    if yaml:  # as the _self_ of a config whose defaults list is ppo_trainer: new keys allowed
        with open_dict(cfg):
            cfg.merge_with(snippet)
    return cfg


def data_proto(tokenizer: Any, cases: list[dict[str, Any]], *, prompts: bool) -> DataProto:
    """A rollout batch as verl's agent loop hands it to the reward workers (right-padded responses)."""
    prompt_ids = [tokenizer("<svg", add_special_tokens=False)["input_ids"] for _ in cases]
    response_ids = [tokenizer(c["response"], add_special_tokens=False)["input_ids"] for c in cases]
    p_len, r_len = max(map(len, prompt_ids)), max(map(len, response_ids))
    pad = tokenizer.pad_token_id
    p = torch.tensor([[pad] * (p_len - len(ids)) + ids for ids in prompt_ids])
    r = torch.tensor([ids + [pad] * (r_len - len(ids)) for ids in response_ids])
    mask = torch.tensor(
        [
            [0] * (p_len - len(a)) + [1] * len(a) + [1] * len(b) + [0] * (r_len - len(b))
            for a, b in zip(prompt_ids, response_ids)
        ]
    )
    tensors = {"prompts": p, "responses": r, "attention_mask": mask, "input_ids": torch.cat([p, r], 1)}
    if not prompts:
        del tensors["prompts"]
    objects = {
        "data_source": np.array(["svg"] * len(cases), dtype=object),
        "reward_model": np.array([{"ground_truth": c["ground_truth"]} for c in cases], dtype=object),
        "extra_info": np.array([dict(c.get("extra_info", {})) for c in cases], dtype=object),
    }
    return DataProto.from_dict(tensors=tensors, non_tensors=objects)


class FixedLLM:
    """Stand-in for verl's LLM server client (vLLM/SGLang need a GPU): answers each prompt with its case's response."""

    def __init__(self, tokenizer_dir: str, responses: dict[str, str]) -> None:
        self.tokenizer_dir, self.responses, self._tokenizer = tokenizer_dir, responses, None

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict, **kwargs: Any) -> Any:
        from transformers import AutoTokenizer
        from verl.workers.rollout.replica import TokenOutput

        self._tokenizer = self._tokenizer or AutoTokenizer.from_pretrained(self.tokenizer_dir)
        prompt = self._tokenizer.decode(prompt_ids)
        response = next(text for key, text in self.responses.items() if key in prompt)
        return TokenOutput(token_ids=self._tokenizer(response, add_special_tokens=False)["input_ids"])


def agent_batch(cases: list[dict[str, Any]], step: int | None) -> DataProto:
    """A generation batch as verl's trainer hands it to the rollout (``_get_gen_batch``)."""
    columns: dict[str, np.ndarray] = {k: np.empty(len(cases), dtype=object) for k in ("raw_prompt", "extra_info")}
    for i, case in enumerate(cases):
        columns["raw_prompt"][i] = [{"role": "user", "content": f"case-{i}:"}]
        columns["extra_info"][i] = dict(case.get("extra_info", {}))
    columns["data_source"] = np.array(["svg"] * len(cases), dtype=object)
    columns["reward_model"] = np.array([{"ground_truth": c["ground_truth"]} for c in cases], dtype=object)
    meta = {} if step is None else {"global_steps": step}
    return DataProto(batch=None, non_tensor_batch=columns, meta_info=meta)


def main() -> None:
    mode, tokenizer_dir, cases = sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text())
    from tests.trainer._tiny_tokenizer import tiny_tokenizer

    tokenizer = tiny_tokenizer(tokenizer_dir, [c["response"] for c in cases] + [c["ground_truth"] for c in cases])
    out: dict[str, Any] = {"verl": verl.__version__}
    if mode == "config":
        from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls

        for name, cfg in (("yaml", config(tokenizer_dir)), ("cli", config(tokenizer_dir, yaml=False))):
            fn = get_custom_reward_fn(cfg)
            out[name] = {
                "custom_reward_function": OmegaConf.to_container(cfg.reward.custom_reward_function),
                "manager": resolve_reward_manager_cls(cfg).__name__,
                "fn": f"{fn.args[0].__module__}.{fn.args[0].__name__}" if fn else None,
                "agent_loop_manager_class": cfg.actor_rollout_ref.rollout.agent.get("agent_loop_manager_class"),
            }
    elif mode == "loop":
        from verl.experimental.reward_loop import RewardLoopWorker

        worker = RewardLoopWorker(config(tokenizer_dir))
        out["manager"] = type(worker.reward_manager).__name__
        data = data_proto(tokenizer, cases, prompts=True)
        outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
        out["outputs"] = [{"reward_score": o["reward_score"], "extra": o["reward_extra_info"]} for o in outputs]
    elif mode == "batch":
        from verl.workers.reward_manager import BatchRewardManager

        from trainer.verl import compute_score_batch

        manager = BatchRewardManager(tokenizer, num_examine=0, compute_score=compute_score_batch)
        result = manager(data_proto(tokenizer, cases, prompts=True), return_dict=True)
        tensor = result["reward_tensor"]
        out["rewards"] = tensor.sum(-1).tolist()
        out["last_token_holds_reward"] = bool((tensor != 0).sum(-1).le(1).all())
        out["extra"] = {k: list(v) for k, v in result["reward_extra_info"].items()}
    elif mode == "ray":
        import ray
        from verl.experimental.reward_loop import RewardLoopManager

        ray.init(num_cpus=1, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
        try:
            manager = RewardLoopManager(config(tokenizer_dir))
            scored = manager.compute_rm_score(data_proto(tokenizer, cases, prompts=True))
            out["rm_scores"] = scored.batch["rm_scores"].sum(-1).tolist()
            out["extra_keys"] = scored.meta_info["reward_extra_keys"]
            out["status"] = list(scored.non_tensor_batch["status"])
            bad = [{"response": cases[0]["response"], "ground_truth": '{"svg": 5}'}]
            try:
                manager.compute_rm_score(data_proto(tokenizer, bad, prompts=True))
            except Exception as exc:  # Ray re-raises the actor's error: is it still ours?
                from trainer import RequestRejected

                out["error"] = {
                    "ray_type": type(exc).__name__,
                    "is_request_rejected": isinstance(exc, RequestRejected),
                    "status_code": getattr(exc, "status_code", None),
                }
        finally:
            ray.shutdown()
    elif mode == "agent":
        import ray
        from transformers import GPT2Config
        from verl.experimental.reward_loop import RewardLoopManager
        from verl.utils.import_utils import load_class_from_fqn

        GPT2Config(
            vocab_size=len(tokenizer), n_layer=1, n_embd=32, n_head=2, architectures=["GPT2LMHeadModel"]
        ).save_pretrained(tokenizer_dir)
        cfg = config(tokenizer_dir)
        cfg.actor_rollout_ref.model.custom_chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        cfg.actor_rollout_ref.rollout.agent.num_workers = 1
        cfg.actor_rollout_ref.rollout.name = "vllm"  # only named: FixedLLM stands in for its server
        cfg.actor_rollout_ref.rollout.prompt_length, cfg.actor_rollout_ref.rollout.response_length = 64, 4096
        ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False)
        try:
            rewards = RewardLoopManager(cfg)
            fqn = cfg.actor_rollout_ref.rollout.get("agent", {}).get("agent_loop_manager_class")  # as ray_trainer
            manager_cls = load_class_from_fqn(fqn, "AgentLoopManager")
            out["manager"] = f"{manager_cls.__module__}.{manager_cls.__name__}"
            llm = FixedLLM(tokenizer_dir, {f"case-{i}:": c["response"] for i, c in enumerate(cases)})
            manager = manager_cls.create(
                config=cfg, llm_client=llm, reward_loop_worker_handles=rewards.reward_loop_workers
            )
            for step in (None, 0, 500):
                got = manager.generate_sequences(agent_batch(cases, step))
                out[str(step)] = {
                    "rm_scores": got.batch["rm_scores"].sum(-1).tolist(),
                    "global_step": [None if v is None else int(v) for v in got.non_tensor_batch["global_step"]]
                    if "global_step" in got.non_tensor_batch
                    else None,
                    "status": list(got.non_tensor_batch["status"]),
                }
        finally:
            ray.shutdown()
    print("RESULT " + json.dumps(out, default=str))


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
