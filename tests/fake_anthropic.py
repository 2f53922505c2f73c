"""A scripted Messages API for tests: the real ``anthropic`` SDK talks to it through httpx2.

``FakeMessagesAPI`` answers each request with the next scripted reply and keeps every request
body, so tests can assert both what the planner sent and how it handled each answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2

Reply = tuple[int, dict[str, Any]] | Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def tool_reply(
    plan_input: dict[str, Any],
    input_tokens: int = 2400,
    output_tokens: int = 900,
    cache_read: int = 0,
    cache_creation: int = 0,
    model: str = "claude-sonnet-5-5",
) -> tuple[int, dict[str, Any]]:
    """A 200 answer whose only content block calls ``submit_plan`` with ``plan_input``."""
    return 200, {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "tool_use", "id": "toolu_fake", "name": "submit_plan",
                     "input": plan_input}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_read_input_tokens": cache_read,
                  "cache_creation_input_tokens": cache_creation},
    }


def error_reply(status: int, kind: str, message: str = "fake error") -> tuple[int, dict[str, Any]]:
    """An API error body as the Messages API sends it."""
    return status, {"type": "error", "error": {"type": kind, "message": message}}


@dataclass
class FakeMessagesAPI:
    """Scripted replies in order; the last one repeats when the script runs out."""

    replies: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self._answer)

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        index = min(len(self.requests), len(self.replies)) - 1
        reply = self.replies[index]
        status, payload = reply(body) if callable(reply) else reply
        return httpx2.Response(status, json=payload)
