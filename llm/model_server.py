"""Generation through an OpenAI-compatible model server; the only module that imports ``httpx``.

Teams with a GPU server often run a model server already (vLLM, Ollama,
llama.cpp's server, llama-cpp-python's ``python -m llama_cpp.server``,
Xinference) with a larger model than the registries carry. With
``KB_LLM_BASE_URL`` set, the same prompts go there instead of to the
in-process llama.cpp model; streaming, citation checks, abstention and the UI
do not change, because ``ServerGenerator`` is just another ``Generator``.

- ``base_url`` is the OpenAI-style address, with its ``/v1``
  (``http://gpu-box:8000/v1``); replies stream from ``/v1/chat/completions``
  as server-sent events.
- The model is ``KB_LLM_SERVER_MODEL``, or the first one ``/v1/models`` lists.
- Token counts for the prompt budget: the server's own tokenizer when it has
  an endpoint for it (llama-cpp-python ``/extras/tokenize``, llama.cpp and
  vLLM ``/tokenize``), found once at start; otherwise a safe over-estimate
  (one token per Chinese character, one per three other characters), so a
  prompt never overflows the window for want of a tokenizer.
- A server that is down, refuses the key, or does not answer within
  ``timeout`` seconds raises ``GenerationError`` naming the address and what
  to check; nothing waits forever.

Worked example::

    generator = ServerGenerator("http://127.0.0.1:8000/v1", context_window=8192)
    "".join(generator.stream_chat([ChatMessage("user", "Say hi")], 16, 0.0))   -> "Hello!"

Deliberately not here: starting or managing the server, the server's
context window (it cannot be asked in a standard way: ``KB_CONTEXT_WINDOW``
says it), function calling and other OpenAI features the answers do not use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache

import httpx

from llm.generator import ChatMessage, GenerationError, Generator, GeneratorInfo

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """An over-estimate for tokenizers we cannot ask: a Chinese character is at most one token, other text
    averages about four characters a token in English (three here, to stay on the safe side)."""
    chinese = len(_CJK.findall(text))
    return chinese + -(-(len(text) - chinese) // 3)


class ServerGenerator(Generator):
    """A chat model behind an OpenAI-compatible HTTP API."""

    def __init__(
        self, base_url: str, *, model: str | None = None, api_key: str | None = None, context_window: int = 4096,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # connect: a server that is down fails in seconds; read: the gap allowed between two streamed pieces.
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=5.0))
        self._root = root
        self._timeout = timeout
        self.model = model or self._first_model()
        # The prompt builder counts the same texts again and again (the system prompt, source headers, prefixes
        # it tries while fitting a passage): each distinct text costs one request, once.
        self._count: Callable[[str], int] = lru_cache(maxsize=4096)(self._server_tokenizer() or estimate_tokens)
        self.info = GeneratorInfo(
            model=self.model, context_window=context_window, threads=0, gpu_layers=0, gpu_offload_supported=False,
            server=self.base_url,
        )

    # ----- talking to the server ---------------------------------------------
    def _request(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise GenerationError(f"the model server at {self.base_url} did not answer within {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise GenerationError(f"cannot reach the model server at {self.base_url} ({exc}); is it running?") from exc
        self._check(response)
        return response

    def _check(self, response: httpx.Response) -> None:
        if response.status_code in (401, 403):
            raise GenerationError(f"the model server at {self.base_url} refused the API key (KB_LLM_API_KEY)")
        if response.status_code >= 400:
            detail = response.read().decode("utf-8", "replace")[:300]
            raise GenerationError(f"the model server at {self.base_url} answered {response.status_code}: {detail}")

    def _first_model(self) -> str:
        listed = self._request("GET", f"{self.base_url}/models").json().get("data") or []
        if not listed:
            raise GenerationError(f"the model server at {self.base_url} lists no model; set KB_LLM_SERVER_MODEL")
        return str(listed[0]["id"])

    def _server_tokenizer(self) -> Callable[[str], int] | None:
        """The server's tokenizer as a counting function, if it offers one (tried once, at start)."""
        candidates = [
            (f"{self._root}/extras/tokenize", lambda text: {"input": text}),  # llama-cpp-python
            (f"{self._root}/tokenize", lambda text: {"content": text}),  # llama.cpp's server
            (f"{self._root}/tokenize", lambda text: {"model": self.model, "prompt": text}),  # vLLM
        ]
        for url, body in candidates:
            try:
                response = self._client.post(url, json=body("probe"))
                if response.status_code == 200 and isinstance(response.json().get("tokens"), list):
                    return lambda text, url=url, body=body: len(
                        self._request("POST", url, json=body(text)).json()["tokens"])
            except (httpx.HTTPError, ValueError):
                continue
        return None

    # ----- Generator ----------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return self._count(text)

    def stream_chat(self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float) -> Iterator[str]:
        body = {
            "model": self.model, "stream": True, "max_tokens": max_tokens, "temperature": temperature,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
        }
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as response:
                self._check(response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank keep-alives and comments between events
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        return
                    choices = json.loads(data).get("choices") or [{}]
                    piece = (choices[0].get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except httpx.TimeoutException as exc:
            raise GenerationError(f"the model server at {self.base_url} stopped answering for {self._timeout:g} s") from exc
        except httpx.HTTPError as exc:
            raise GenerationError(f"cannot reach the model server at {self.base_url} ({exc}); is it running?") from exc
        except json.JSONDecodeError as exc:
            raise GenerationError(f"the model server at {self.base_url} sent something that is not an OpenAI stream") from exc
