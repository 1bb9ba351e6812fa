"""Versioned compact wire encoding for everything that crosses the link.

Frame: b"SW" + format version (1 byte) + codec (1 byte) + payload, where the payload is
(after decompression) a JSON array of messages discriminated by their `kind`. Codecs:
0 raw, 1 zstd, 2 zstd with a shipped dictionary; format 2 added codec 2, whose header has
one more byte, the dictionary's version, before the payload. A frame carries the lowest
format version that can read it (raw and plain zstd frames stay format 1) and a reader
accepts every version up to its own, so a ship one release behind the hub is still read.

Why a dictionary: the ship sends one incident version per NATS message, 1-4 KB of JSON,
too little for zstd to find much to reuse inside it, while most of it (field names, enum
values, detector and device names, the phrasing of summaries) repeats from one incident
to the next. A dictionary trained on representative messages (sync.dictionary) supplies
that context and cuts a single incident to about a third of plain zstd's frame. Bodies
over 16 KiB (batches of several incidents) stay format 1, plain zstd, which every hub
reads: the dictionary saves less there (20-45 %, not 60 %), and batches are not how the
ship sends incidents.

Dictionaries ship as package data (shared/dicts/incidents-vN.zdict) and are loaded once,
when first needed. A shipped version's bytes never change, since frames in outboxes and
archives name it by number: a better dictionary is a new version, added to DICTIONARIES.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from importlib import resources

import orjson
import zstandard
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.models import WireMessage

MAGIC = b"SW"
FORMAT_VERSION = 2
RAW, ZSTD, ZSTD_DICT = 0, 1, 2
# version -> file in shared/dicts; never edit one. v2 adds the remediation requests ships
# send; a hub reads every version, so upgrade the hub before its ships.
DICTIONARIES = {1: "incidents-v1.zdict", 2: "incidents-v2.zdict"}
DICTIONARY_VERSION = max(DICTIONARIES)  # what encode uses by default
LEVEL = 9  # moderate: a single incident takes tens of microseconds on the ship's cores
_COMPRESS_OVER = 512  # below this, zstd's header costs more than it saves
_DICT_UNDER = 16 * 1024  # larger bodies (batches) stay format 1 (see above)
_MAGICLESS = zstandard.FORMAT_ZSTD1_MAGICLESS  # codec 2 frames drop zstd's 4-byte magic

_adapter: TypeAdapter[list[WireMessage]] = TypeAdapter(list[WireMessage])
_MAX_DECODED = 64 * 1024 * 1024


class WireError(ValueError):
    """A frame that cannot be decoded; the message says why."""


def dumps(messages: Sequence[BaseModel]) -> bytes:
    """The JSON body of a frame: what the codecs compress and dictionaries are trained on."""
    return orjson.dumps([m.model_dump(mode="json", exclude_none=True) for m in messages])


def encode(messages: Sequence[BaseModel], dictionary: int | None = DICTIONARY_VERSION) -> bytes:
    """A frame of the messages; `dictionary=None` writes format 1 only (for older readers)."""
    body = dumps(messages)
    if len(body) <= _COMPRESS_OVER:
        return MAGIC + bytes((1, RAW)) + body
    if dictionary is not None and len(body) <= _DICT_UNDER:
        compressor, _ = _codec(dictionary)
        return MAGIC + bytes((2, ZSTD_DICT, dictionary)) + compressor.compress(body)
    return MAGIC + bytes((1, ZSTD)) + _codec(None)[0].compress(body)


def decode(frame: bytes) -> list[WireMessage]:
    if len(frame) < 4 or frame[:2] != MAGIC:
        raise WireError("not a Seawatch wire frame (bad magic)")
    version, codec = frame[2], frame[3]
    if version > FORMAT_VERSION:
        raise WireError(f"wire format {version} is newer than this reader ({FORMAT_VERSION})")
    body = frame[4:]
    try:
        if codec == ZSTD:
            body = _codec(None)[1].decompress(body, max_output_size=_MAX_DECODED)
        elif codec == ZSTD_DICT and version >= 2:
            if not body:
                raise WireError("dictionary frame without a dictionary version")
            _, decompressor = _codec(body[0])
            body = decompressor.decompress(body[1:], max_output_size=_MAX_DECODED)
        elif codec != RAW:
            raise WireError(f"unknown codec {codec} in wire format {version}")
    except zstandard.ZstdError as exc:
        raise WireError(f"zstd: {exc}") from exc
    try:
        return _adapter.validate_json(body)
    except ValidationError as exc:
        raise WireError(
            f"invalid message: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        ) from exc


Codec = tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]
_per_thread = threading.local()  # zstd contexts must not be shared between threads


def _codec(dictionary: int | None) -> Codec:
    """This thread's compressor and decompressor, plain (None) or with a dictionary."""
    codecs: dict[int | None, Codec] = _per_thread.__dict__.setdefault("codecs", {})
    codec = codecs.get(dictionary)
    if codec is None:
        if dictionary is None:
            codec = (zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdDecompressor())
        else:
            zdict, params = _dictionary(dictionary)
            codec = (
                zstandard.ZstdCompressor(dict_data=zdict, compression_params=params),
                zstandard.ZstdDecompressor(dict_data=zdict, format=_MAGICLESS),
            )
        codecs[dictionary] = codec
    return codec


@functools.cache
def _dictionary(
    version: int,
) -> tuple[zstandard.ZstdCompressionDict, zstandard.ZstdCompressionParameters]:
    name = DICTIONARIES.get(version)
    if name is None:
        known = ", ".join(map(str, sorted(DICTIONARIES)))
        raise WireError(f"unknown zstd dictionary version {version} (this reader has {known})")
    try:
        data = resources.files("shared").joinpath("dicts", name).read_bytes()
    except OSError as exc:
        raise WireError(f"zstd dictionary v{version} ({name}) is not installed: {exc}") from exc
    zdict = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
    params = zstandard.ZstdCompressionParameters.from_level(
        LEVEL, dict_size=len(data), format=_MAGICLESS, write_dict_id=False
    )
    zdict.precompute_compress(compression_params=params)
    return zdict, params
