"""An HTTP client of a running vLLM server (smoke, verify, bench, probe): every failure is one CheckFailed line that
says what happened (not up, timeout, the key, vLLM's own error message)."""

from __future__ import annotations

from typing import Any

import httpx

from llama_ascend.errors import CheckFailed

MODELS_PATH = "/v1/models"


class HTTPError(CheckFailed):
    """The server answered with an HTTP error status; `message` is vLLM's error message."""

    def __init__(self, text: str, status: int, message: str):
        super().__init__(text)
        self.status = status
        self.message = message


def error_message(response: httpx.Response) -> str:
    """vLLM's error message: {"error": {"message": ...}} (the API), {"error": "..."} (the key check), else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        error = error.get("message") or error
    return str(error)[:300]


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The headers that carry the server's API key (vLLM's --api-key: a bearer token); none without a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class ServerClient:
    """`key_source` names where the key comes from, for the message when the server refuses it."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
        key_source: str = "--api-key or $LLAMA_ASCEND_API_KEY",
    ):
        self.url = url.rstrip("/")
        self.sends_key = bool(api_key)
        self.key_source = key_source
        self.http = httpx.Client(base_url=self.url, headers=auth_headers(api_key), timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        return self.send(method, path, **kwargs).json()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The response if its status is below 400."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise CheckFailed(f"{self.url}{path}: no answer within {self.http.timeout.read} s") from None
        except httpx.TransportError as exc:
            raise CheckFailed(
                f"{self.url}: server unreachable ({exc.__class__.__name__}: {exc}); not up yet, or not running"
            ) from None
        if response.status_code == 401:
            problem = "refused the API key" if self.sends_key else "needs an API key"
            raise HTTPError(
                f"{self.url}{path}: 401 Unauthorized: the server {problem} ({self.key_source})", 401, "Unauthorized"
            )
        if response.status_code >= 400:
            message = error_message(response)
            raise HTTPError(f"{self.url}{path}: HTTP {response.status_code}: {message}", response.status_code, message)
        return response

    def stream(self, path: str, body: dict[str, Any]) -> list[str]:
        """The `data:` payloads of an SSE response, in order."""
        with self.http.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                raise CheckFailed(f"{self.url}{path}: HTTP {response.status_code} on a streamed request")
            return [line[len("data:") :].strip() for line in response.iter_lines() if line.startswith("data:")]

    def served_models(self) -> list[str]:
        return [entry["id"] for entry in self.request("GET", MODELS_PATH).get("data", [])]
