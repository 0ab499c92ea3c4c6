"""Runs in .venv-openrlhf (OpenRLHF 0.11.2, no GPU stack), not under pytest: prints JSON.

``python _openrlhf_driver.py args`` parses trainer/README.md's OpenRLHF flags with OpenRLHF's own
argument parser (``openrlhf.cli.train_ppo_ray``, run as ``__main__``; the modules that need vLLM or
DeepSpeed are stubbed, and the run stops where training would start). ``python _openrlhf_driver.py
rollouts URL TOKENIZER_DIR CASES_JSON`` sends each case through OpenRLHF's own single-turn rollout
(``SingleTurnAgentExecutor.execute``: tokenize, generate, decode, ``POST`` to the remote reward
URL, its retries), all concurrently, one sample per request as OpenRLHF does; the generation
engine is a stand-in that answers the case's response.
"""

from __future__ import annotations

import asyncio
import json
import re
import runpy
import sys
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class _Captured(Exception):
    """Raised where OpenRLHF's ``train(args)`` would build its strategy: the parsed args are final."""

    def __init__(self, args: Any) -> None:
        super().__init__("captured")
        self.parsed = args


def readme_flags() -> list[str]:
    section = REPO.joinpath("trainer/README.md").read_text().split("## OpenRLHF", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]
    words = block.replace("\\\n", " ").split()
    return [w for w in words[words.index("openrlhf.cli.train_ppo_ray") + 1 :] if w != "..."]


def parse_args(flags: list[str]) -> Any:
    import openrlhf.utils
    import ray

    stubs = {
        "openrlhf.trainer.ray": ["create_vllm_engines"],
        "openrlhf.trainer.ray.launcher": ["RayActorGroup", "ReferenceModelActor", "RewardModelActor"],
        "openrlhf.trainer.ray.ppo_actor": ["PolicyModelActor"],
        "openrlhf.trainer.ray.ppo_critic": ["CriticModelActor"],
    }
    for name, attributes in stubs.items():
        module = types.ModuleType(name)
        for attribute in attributes:
            setattr(module, attribute, object())
        sys.modules[name] = module

    def capture(args: Any) -> None:
        raise _Captured(args)

    openrlhf.utils.get_strategy = capture  # type: ignore[attr-defined]
    ray.is_initialized = lambda: True  # type: ignore[assignment]
    sys.argv = ["train_ppo_ray", *flags]
    try:
        runpy.run_module("openrlhf.cli.train_ppo_ray", run_name="__main__")
    except _Captured as done:
        return done.parsed
    raise AssertionError("train_ppo_ray returned without reaching train()")


async def rollouts(url: str, tokenizer: Any, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=[url])

    class Engine:  # stands in for vLLM: answers the case's response as token ids
        def __init__(self, response: str) -> None:
            self.ids = tokenizer(response, add_special_tokens=False)["input_ids"]

        async def generate(self, prompt_ids: list[int], params: Any, multi_modal_data: Any = None) -> Any:
            output = types.SimpleNamespace(token_ids=self.ids, text="", finish_reason="stop", logprobs=None)
            return types.SimpleNamespace(outputs=[output])

    async def one(case: dict[str, Any]) -> dict[str, Any]:
        params = types.SimpleNamespace(max_tokens=4096, logprobs=None)
        start = time.monotonic()
        out = await executor.execute(case["prompt"], case["label"], params, 8192, tokenizer, Engine(case["response"]))
        return {
            "reward": out["reward"],
            "scores": out["scores"],
            "extra_logs": out["extra_logs"],
            "seconds": time.monotonic() - start,
        }

    return list(await asyncio.gather(*(one(case) for case in cases)))


def main() -> None:
    import openrlhf

    out: dict[str, Any] = {"openrlhf": getattr(openrlhf, "__version__", None)}
    from importlib.metadata import version

    out["openrlhf"] = version("openrlhf")
    if sys.argv[1] == "args":
        flags = readme_flags()
        args = parse_args(flags)
        out["flags"] = flags
        out["remote_url"] = args.reward.remote_url
        out["label_key"] = args.data.label_key
        legacy = ["--remote_rm_url", "http://x/openrlhf/reward", "--label_key", "svg"]
        try:
            parse_args([f for f in flags if not f.startswith(("--reward.remote_url", "--data.label_key"))] + legacy)
            out["legacy_flags"] = "accepted"
        except SystemExit as exc:
            out["legacy_flags"] = f"rejected ({exc.code})"
    else:
        from tests.trainer._tiny_tokenizer import tiny_tokenizer

        url, tokenizer_dir, cases = sys.argv[2], sys.argv[3], json.loads(Path(sys.argv[4]).read_text())
        corpus = [c["prompt"] + c["response"] for c in cases]
        out["rollouts"] = asyncio.run(rollouts(url, tiny_tokenizer(tokenizer_dir, corpus), cases))
    print("RESULT " + json.dumps(out, default=str))


if __name__ == "__main__":
    main()
