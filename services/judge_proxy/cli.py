"""Command line of the judge proxy: ``python -m services.judge_proxy`` (``rlrf judge-proxy``)."""

from __future__ import annotations

import argparse
import sys

_DESCRIPTION = """\
Serve the VLM judge proxy over HTTP: POST /v1/judge, GET /v1/rubrics, /healthz, /readyz, /metrics
(OpenAPI at /docs).

Backends come from RLRF_JUDGE_* environment variables (or .env):
  Gemini:             RLRF_JUDGE_GEMINI_API_KEY=...  [RLRF_JUDGE_GEMINI_MODEL=gemini-2.5-flash]
  OpenAI-compatible:  RLRF_JUDGE_OPENAI_BASE_URL=http://vllm:8000
                      [RLRF_JUDGE_OPENAI_MODEL=Qwen/Qwen2.5-VL-7B-Instruct]
Verdicts are cached in Redis (RLRF_JUDGE_REDIS_URL, RLRF_JUDGE_CACHE_TTL_S; 0 turns caching off).
Limits, deadline, retries, prices and the API token: see services/judge_proxy/README.md.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rlrf judge-proxy", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", help="bind address (default 127.0.0.1, or RLRF_JUDGE_HOST; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="port (default 8100, or RLRF_JUDGE_PORT)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level",
    )
    args = parser.parse_args(argv)

    import uvicorn  # the server stack loads only when serving, so --help stays fast

    from services.judge_proxy.app import create_app
    from services.judge_proxy.settings import JudgeSettings

    settings = JudgeSettings()
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = settings.model_copy(update=updates)
    if settings.gemini_api_key is None and not settings.openai_base_url:
        print(
            "judge-proxy: warning: no backend configured (RLRF_JUDGE_GEMINI_API_KEY or RLRF_JUDGE_OPENAI_BASE_URL);"
            " /readyz will answer 503",
            file=sys.stderr,
        )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level)
    return 0
