"""Re-export of ``services.reward_api.image_metrics`` (MSE, SSIM, code efficiency), where it used to live.

The pure metrics moved into the service package so that ``rlrf audit`` (server side) can use them
without importing the trainer; ``rlrf eval`` and existing imports keep working through this module.
"""

from services.reward_api.image_metrics import (
    HIGHER_IS_BETTER,
    code_efficiency,
    mean_squared_error,
    structural_similarity,
)

__all__ = ["HIGHER_IS_BETTER", "code_efficiency", "mean_squared_error", "structural_similarity"]
