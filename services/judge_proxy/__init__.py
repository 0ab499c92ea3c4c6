"""One HTTP front for VLM judges (Gemini, OpenAI-compatible servers such as vLLM): see README.md here.

The package root exports the client side only (httpx and pydantic); the server lives in ``app.py``.
"""

from services.judge_proxy.client import JudgeClient, JudgeUnavailable
from services.judge_proxy.schemas import JudgeError, Verdict

__all__ = ["JudgeClient", "JudgeError", "JudgeUnavailable", "Verdict"]
