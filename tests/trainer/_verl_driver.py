"""Runs in .venv-verl (verl 0.9.1), not under pytest: drives verl's own reward code, prints JSON.

``python _verl_driver.py MODE TOKENIZER_DIR CASES_JSON``; the service is at ``RLRF_URL``. Modes:
``config`` (verl's hydra config with trainer/README.md's snippet and CLI overrides), ``loop``
(verl's RewardLoopWorker, reward loop ``naive`` manager), ``batch`` (verl's BatchRewardManager),
``ray`` (verl's RewardLoopManager on a local Ray cluster, plus a 422 raised inside its actor).
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
from omegaconf import OmegaConf
from verl import DataProto

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = Path(verl.__file__).parent / "trainer" / "config"


def readme_snippets() -> tuple[dict[str, Any], list[str]]:
    """The verl section's YAML block and its command-line overrides, as trainer/README.md shows them."""
    section = REPO.joinpath("trainer/README.md").read_text().split("## verl", 1)[1].split("\n## ", 1)[0]
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    cli = re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    overrides = [word for word in cli.replace("\\\n", " ").split() if "=" in word and word.startswith("reward.")]
    return OmegaConf.to_container(OmegaConf.create(yaml)), overrides  # type: ignore[return-value]


def config(tokenizer_dir: str, *, yaml: bool = True) -> Any:
    """verl's ppo_trainer config, as main_ppo composes it, with our snippet on top."""
    snippet, overrides = readme_snippets()
    base = [f"actor_rollout_ref.model.path={tokenizer_dir}", "reward.num_workers=1"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=base + ([] if yaml else overrides))
    if yaml:
        cfg = OmegaConf.merge(cfg, snippet)
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
    print("RESULT " + json.dumps(out, default=str))


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
