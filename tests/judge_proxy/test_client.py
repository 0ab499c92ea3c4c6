"""``JudgeClient`` against a real proxy; ``JudgeUnavailable`` whenever the proxy itself fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

import services.judge_proxy as package
from services.judge_proxy.client import JudgeClient, JudgeError, JudgeUnavailable, Verdict
from services.judge_proxy.rubrics import VFIG_IM2SVG
from tests.judge_proxy._servers import Behaviour, FakeOpenAI, free_port, png, verdict_for
from tests.judge_proxy.conftest import REPO, Proxy

REFERENCE = png(ink_rows=20)


def test_judge_returns_verdicts_and_errors_in_order(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy(api_token="tok", openai_max_concurrency=1)  # one at a time: the script meets them in order
    openai_server.script("ok", "malformed")
    candidates = [png(ink_rows=10), png(ink_rows=30)]
    with JudgeClient(base, token="tok") as client:
        results = client.judge("vfig-im2svg", candidates, reference_png=REFERENCE, backend="openai")
        verdict, error = results
        assert isinstance(verdict, Verdict) and isinstance(error, JudgeError)
        assert verdict.score == pytest.approx(VFIG_IM2SVG.combine(verdict_for(candidates[0], VFIG_IM2SVG.schema)))
        assert (
            verdict.flags == () and verdict.cached is False and set(verdict.axes) == {a.name for a in VFIG_IM2SVG.axes}
        )
        assert error.retryable is False and error.error.startswith("malformed")
        assert [r.name for r in client.rubrics()] == ["vfig-im2svg", "rlrf-text2svg"]
        with pytest.raises(Exception, match="frozen"):
            verdict.score = 1.0  # type: ignore[misc]


def test_unavailable_when_the_proxy_is_down() -> None:
    client = JudgeClient(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    with client, pytest.raises(JudgeUnavailable, match="unreachable") as info:
        client.judge("vfig-im2svg", [png()], reference_png=REFERENCE)
    assert info.value.status_code is None


def test_unavailable_on_4xx(proxy: Proxy) -> None:
    base = proxy(api_token="tok")
    with JudgeClient(base, token="wrong") as client, pytest.raises(JudgeUnavailable, match="HTTP 401") as info:
        client.judge("vfig-im2svg", [png()], reference_png=REFERENCE)
    assert info.value.status_code == 401
    with JudgeClient(base, token="tok") as client, pytest.raises(JudgeUnavailable, match="unknown rubric") as info:
        client.judge("vfig-im2sv", [png()], reference_png=REFERENCE)
    assert info.value.status_code == 422


def test_unavailable_when_the_proxy_is_too_slow(proxy: Proxy, openai_server: FakeOpenAI) -> None:
    base = proxy(deadline_s=1)
    openai_server.default = Behaviour("hang", hang_s=5)
    with JudgeClient(base, timeout_s=0.3) as client, pytest.raises(JudgeUnavailable, match="ReadTimeout"):
        client.judge("vfig-im2svg", [png()], reference_png=REFERENCE)


def test_exports() -> None:
    assert package.__all__ == sorted(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)
    assert package.JudgeClient is JudgeClient and package.JudgeUnavailable is JudgeUnavailable
    assert issubclass(JudgeUnavailable, Exception)


def test_the_client_imports_no_server_stack() -> None:
    code = (
        "import sys, services.judge_proxy.client; heavy = [m for m in sys.modules"
        " if m.split('.')[0] in ('fastapi', 'uvicorn', 'redis', 'PIL', 'prometheus_client')"
        " or m.startswith('google.genai')]; print(heavy); assert not heavy"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
