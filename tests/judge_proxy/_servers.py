"""Fake VLM judge servers speaking the real wire formats, and the proxy itself, on loopback.

Reusable from any test (the reward API's end-to-end judge test included)::

    with FakeOpenAI() as vllm, serve(create_app(JudgeSettings(openai_base_url=vllm.url, ...))) as proxy:
        vllm.script("rate_limit", "ok")  # the next requests, in arrival order; then ``vllm.default``
        ...                              # POST {proxy}/v1/judge
        vllm.requests[0].body            # every request is recorded (path, headers, JSON body, time)

``FakeOpenAI`` answers ``POST /v1/chat/completions`` (vLLM's OpenAI-compatible server);
``FakeGemini`` answers ``POST /v1beta/models/{model}:generateContent`` (the Gemini REST API the
google-genai SDK calls; point the SDK at it with ``HttpOptions(base_url=gemini.url)``).

A valid verdict is computed from the request: the last image in it (the candidate) is decoded and
each axis of the JSON schema the request carries gets ``low + (high - low) * ink ** (i + 1)``, with
``ink`` the fraction of non-white pixels (see ``verdict_for``). Different drawings get different
scores, and a test can predict them. Behaviours (``Behaviour`` or its kind as a string):

    ok            that verdict as plain JSON
    fenced        the verdict in a ```json fence, with prose around it
    prose         the verdict inside prose, no fence
    out_of_range  every axis at 1.5 x its maximum + 0.5
    malformed     prose with no JSON at all
    rate_limit    429 with a Retry-After header (``retry_after_s``)
    retry_info    429 with Gemini's RetryInfo detail in the body instead of a header (FakeGemini)
    server_error  500
    bad_request   400
    hang          answer nothing for ``hang_s`` seconds (then the verdict), to cross a deadline
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import time
from collections import deque
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import FastAPI
from PIL import Image

from tests.api.conftest import free_port, running

__all__ = ["Behaviour", "FakeGemini", "FakeOpenAI", "free_port", "png", "serve", "verdict_for"]


@dataclass(frozen=True)
class Behaviour:
    """How the fake answers one request."""

    kind: str = "ok"
    retry_after_s: float = 1.0
    hang_s: float = 30.0


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


def ink(png: bytes) -> float:
    """Fraction of pixels that are not white (any channel under 250), rounded to 4 places."""
    with Image.open(io.BytesIO(png)) as image:
        grey = image.convert("RGB").convert("L")
        dark = sum(count for value, count in enumerate(grey.histogram()) if value < 250)
        return round(dark / (grey.width * grey.height), 4)


def verdict_for(png: bytes, schema: dict[str, Any]) -> dict[str, float]:
    """The verdict a fake judge gives ``png`` under a rubric's JSON schema (axes in schema order)."""
    share = ink(png)
    out = {}
    for i, (name, prop) in enumerate(schema["properties"].items()):
        low, high = prop.get("minimum", 0.0), prop.get("maximum", 1.0)
        out[name] = round(low + (high - low) * share ** (i + 1), 4)
    return out


def png(size: tuple[int, int] = (64, 64), *, ink_rows: int = 0, mode: str = "RGB", alpha: int = 255) -> bytes:
    """A white PNG whose first ``ink_rows`` rows are black (``mode="RGBA"``: with that alpha everywhere)."""
    width, height = size
    if mode == "RGBA":
        image = Image.new("RGBA", size, (255, 255, 255, alpha))
        for y in range(min(ink_rows, height)):
            for x in range(width):
                image.putpixel((x, y), (0, 0, 0, alpha))
    else:
        image = Image.new("RGB", size, (255, 255, 255))
        for y in range(min(ink_rows, height)):
            for x in range(width):
                image.putpixel((x, y), (0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class FakeJudgeServer:
    """A scriptable judge on a free loopback port, in a thread; a context manager."""

    def __init__(self, *, model: str = "fake-model") -> None:
        self.model = model
        self.default: Behaviour | str = "ok"
        self.delay_s = 0.0  # added to every request: lets concurrency show
        self.usage = (1000, 50)  # prompt, completion tokens reported per answer
        self.requests: list[Recorded] = []
        self.inflight = 0
        self.max_inflight = 0
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> FakeJudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()  # releases hanging handlers
        self._server.shutdown()
        self._server.server_close()

    def script(self, *behaviours: Behaviour | str) -> None:
        """Answer the next requests with these behaviours, in arrival order."""
        with self._lock:
            self._queue.extend(_behaviour(b) for b in behaviours)

    @property
    def calls(self) -> int:
        return len(self.requests)

    # --- the wire format; subclasses speak one ---------------------------------------------
    def route(self, path: str) -> bool:
        raise NotImplementedError

    def candidate_and_schema(self, body: Any) -> tuple[bytes, dict[str, Any]]:
        raise NotImplementedError

    def success(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def error(self, code: int, message: str, behaviour: Behaviour) -> dict[str, Any]:
        return {"error": {"code": code, "message": message}}

    # --- request handling --------------------------------------------------------------------
    def _answer(self, body: Any) -> tuple[int, dict[str, str], dict[str, Any]]:
        with self._lock:
            behaviour = self._queue.popleft() if self._queue else _behaviour(self.default)
        if self.delay_s:
            self._closing.wait(self.delay_s)
        kind = behaviour.kind
        if kind == "hang":
            self._closing.wait(behaviour.hang_s)
            kind = "ok"
        if kind == "rate_limit":
            return 429, {"Retry-After": f"{behaviour.retry_after_s:g}"}, self.error(429, "slow down", behaviour)
        if kind == "retry_info":
            return 429, {}, self.error(429, "quota exceeded", behaviour)
        if kind == "server_error":
            return 500, {}, self.error(500, "internal error", behaviour)
        if kind == "bad_request":
            return 400, {}, self.error(400, "bad request", behaviour)
        candidate, schema = self.candidate_and_schema(body)
        verdict = verdict_for(candidate, schema)
        if kind == "out_of_range":
            verdict = {k: schema["properties"][k].get("maximum", 1.0) * 1.5 + 0.5 for k in verdict}
        text = json.dumps(verdict)
        if kind == "fenced":
            text = f"Here is my assessment.\n```json\n{json.dumps(verdict, indent=2)}\n```\nHope this helps."
        elif kind == "prose":
            text = f"After comparing both images my verdict is {text} as requested."
        elif kind == "malformed":
            text = "The candidate looks quite similar to the reference, I would say fairly good."
        elif kind not in ("ok", "out_of_range"):
            raise ValueError(f"unknown behaviour {kind!r}")
        return 200, {}, self.success(text)


class FakeOpenAI(FakeJudgeServer):
    """``POST /v1/chat/completions`` as vLLM serves it."""

    def route(self, path: str) -> bool:
        return path == "/v1/chat/completions"

    def candidate_and_schema(self, body: Any) -> tuple[bytes, dict[str, Any]]:
        urls = [
            part["image_url"]["url"]
            for message in body["messages"]
            if isinstance(message["content"], list)
            for part in message["content"]
            if part.get("type") == "image_url"
        ]
        return _decode_data_url(urls[-1]), body["response_format"]["json_schema"]["schema"]

    def success(self, text: str) -> dict[str, Any]:
        prompt, completion = self.usage
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def error(self, code: int, message: str, behaviour: Behaviour) -> dict[str, Any]:
        return {"object": "error", "message": message, "type": "error", "code": code}


class FakeGemini(FakeJudgeServer):
    """``POST /v1beta/models/{model}:generateContent`` as the Gemini API serves it."""

    def route(self, path: str) -> bool:
        return re.fullmatch(r"/v1beta/models/[^/:]+:generateContent", path) is not None

    def candidate_and_schema(self, body: Any) -> tuple[bytes, dict[str, Any]]:
        images = [p["inlineData"]["data"] for c in body["contents"] for p in c["parts"] if "inlineData" in p]
        config = body["generationConfig"]
        return _decode_b64(images[-1]), config.get("responseJsonSchema") or config["responseSchema"]

    def success(self, text: str) -> dict[str, Any]:
        prompt, completion = self.usage
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": completion,
                "totalTokenCount": prompt + completion,
            },
            "modelVersion": self.model,
        }

    def error(self, code: int, message: str, behaviour: Behaviour) -> dict[str, Any]:
        status = {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 400: "INVALID_ARGUMENT"}.get(code, "UNKNOWN")
        error: dict[str, Any] = {"code": code, "message": message, "status": status}
        if behaviour.kind == "retry_info":
            delay = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{behaviour.retry_after_s:g}s"}
            error["details"] = [delay]
        return {"error": error}


class _Server(ThreadingHTTPServer):
    request_queue_size = 512  # the default backlog of 5 drops bursts of connections (the SYN retry costs 1 s)


def _handler(fake: FakeJudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            path = self.path.split("?")[0]
            if not fake.route(path):
                self._send(404, {}, {"error": {"code": 404, "message": f"no route {path}"}})
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, {}, {"error": {"code": 400, "message": "body is not JSON"}})
                return
            with fake._lock:
                fake.requests.append(Recorded("POST", path, {k.lower(): v for k, v in self.headers.items()}, body))
                fake.inflight += 1
                fake.max_inflight = max(fake.max_inflight, fake.inflight)
            try:
                code, headers, answer = fake._answer(body)
            finally:
                with fake._lock:
                    fake.inflight -= 1
            self._send(code, headers, answer)

        def _send(self, code: int, headers: dict[str, str], body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a deadline): expected

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def _behaviour(b: Behaviour | str) -> Behaviour:
    return b if isinstance(b, Behaviour) else Behaviour(b)


def _decode_data_url(url: str) -> bytes:
    prefix = "data:image/png;base64,"
    if not url.startswith(prefix):
        raise ValueError(f"not a PNG data URL: {url[:40]}")
    return base64.b64decode(url[len(prefix) :], validate=True)


def _decode_b64(data: str) -> bytes:
    """Standard or URL-safe base64 (the SDK sends URL-safe)."""
    return base64.urlsafe_b64decode(data.replace("+", "-").replace("/", "_") + "=" * (-len(data) % 4))


def serve(app: FastAPI) -> AbstractContextManager[str]:
    """``running`` with a 2 s graceful shutdown: a fake judge left hanging must not hold the teardown."""
    return running(app, graceful_s=2)
