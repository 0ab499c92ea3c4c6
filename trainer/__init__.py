"""The thin client a researcher imports: reward functions for TRL, a verl adapter, HTTP clients.

Install with ``pip install 'rlrf[trainer]'`` (no renderers). See trainer/README.md.
"""

from trainer._client import AsyncRewardClient, RewardClient, RolloutResult, ScoreResponse
from trainer._exceptions import RequestRejected, RewardServiceError, ServiceUnavailable
from trainer._rewards import get_component_rewards, get_svg_reward

__all__ = [
    "AsyncRewardClient",
    "RequestRejected",
    "RewardClient",
    "RewardServiceError",
    "RolloutResult",
    "ScoreResponse",
    "ServiceUnavailable",
    "get_component_rewards",
    "get_svg_reward",
]

for _name in __all__:
    globals()[_name].__module__ = "trainer"
