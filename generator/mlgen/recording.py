"""A *recording* is the Messages API responses of one LLM planning run, saved as JSON.

Replaying a recording feeds those responses, in order, to the real ``anthropic`` SDK through an
``httpx2.MockTransport``: the whole LLM path (parsing, validation, repair turns, proposals)
runs offline and deterministically. Recording wraps the real transport and keeps only each
response's status and JSON body; requests (which carry the API key header) are never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from mlgen.errors import MlgenError

FORMAT = "mlgen-llm-recording/1"


@dataclass
class Recording:
    """Responses in the order the planner received them, plus what produced them."""

    exchanges: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    prompt_version: str = ""
    note: str = ""

    @classmethod
    def load(cls, path: Path) -> Recording:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise MlgenError(f"Cannot read the LLM recording {path}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise MlgenError(
                f'{path} is not an mlgen LLM recording (expected "format": "{FORMAT}"). Record '
                "one with --llm-record FILE."
            )
        return cls(
            exchanges=list(data.get("exchanges", [])),
            model=str(data.get("model", "")),
            prompt_version=str(data.get("prompt_version", "")),
            note=str(data.get("note", "")),
        )

    def save(self, path: Path) -> Path:
        document = {
            "format": FORMAT,
            "note": self.note,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "exchanges": self.exchanges,
        }
        Path(path).write_text(
            json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return Path(path)

    def replay_client(self) -> httpx2.Client:
        """An httpx2 client answering each request with the next recorded response."""
        remaining = list(self.exchanges)

        def answer(request: httpx2.Request) -> httpx2.Response:
            if not remaining:
                # 400 is not retried: the planner stops with a clear error instead of looping.
                return httpx2.Response(
                    400,
                    json={
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": f"the recording holds only {len(self.exchanges)} responses",
                        },
                    },
                )
            exchange = remaining.pop(0)
            # Python's JSON (NaN and Infinity included), as a server's body could hold them:
            # httpx2's json= encoder refuses non-finite numbers the SDK itself would parse.
            body = json.dumps(exchange["body"], ensure_ascii=False).encode("utf-8")
            headers = {"content-type": "application/json", **exchange.get("headers", {})}
            return httpx2.Response(exchange["status"], content=body, headers=headers)

        return httpx2.Client(transport=httpx2.MockTransport(answer))

    def recording_client(self, transport: httpx2.BaseTransport | None = None) -> httpx2.Client:
        """An httpx2 client that talks to the real API and appends every response here."""
        return httpx2.Client(transport=_Recorder(transport or httpx2.HTTPTransport(), self))


class _Recorder(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, recording: Recording) -> None:
        self.inner, self.recording = inner, recording

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self.inner.handle_request(request)
        body = response.read()
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {"unparsed": body.decode("utf-8", "replace")}
        self.recording.exchanges.append({"status": response.status_code, "body": parsed})
        # The body is already decoded: drop the headers that describe its wire encoding.
        wire = ("content-encoding", "content-length", "transfer-encoding")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in wire}
        return httpx2.Response(response.status_code, headers=headers, content=body)

    def close(self) -> None:
        self.inner.close()
