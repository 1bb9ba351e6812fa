"""Versioned compact wire encoding for everything that crosses the link.

Frame: b"SW" + format version (1 byte) + codec (1 byte: 0 raw, 1 zstd) + payload, where
the payload is a JSON array of messages discriminated by their `kind`. A reader accepts
every format version up to its own, so a ship one release behind the hub is still read.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import zstandard
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.models import WireMessage

MAGIC = b"SW"
FORMAT_VERSION = 1
RAW, ZSTD = 0, 1
_COMPRESS_OVER = 512  # below this, zstd's header costs more than it saves

_adapter: TypeAdapter[list[WireMessage]] = TypeAdapter(list[WireMessage])
_compressor = zstandard.ZstdCompressor(level=9)
_decompressor = zstandard.ZstdDecompressor()
_MAX_DECODED = 64 * 1024 * 1024


class WireError(ValueError):
    """A frame that cannot be decoded; the message says why."""


def encode(messages: Sequence[BaseModel]) -> bytes:
    body = orjson.dumps([m.model_dump(mode="json", exclude_none=True) for m in messages])
    if len(body) > _COMPRESS_OVER:
        return MAGIC + bytes((FORMAT_VERSION, ZSTD)) + _compressor.compress(body)
    return MAGIC + bytes((FORMAT_VERSION, RAW)) + body


def decode(frame: bytes) -> list[WireMessage]:
    if len(frame) < 4 or frame[:2] != MAGIC:
        raise WireError("not a Seawatch wire frame (bad magic)")
    version, codec = frame[2], frame[3]
    if version > FORMAT_VERSION:
        raise WireError(f"wire format {version} is newer than this reader ({FORMAT_VERSION})")
    body = frame[4:]
    if codec == ZSTD:
        try:
            body = _decompressor.decompress(body, max_output_size=_MAX_DECODED)
        except zstandard.ZstdError as exc:
            raise WireError(f"zstd: {exc}") from exc
    elif codec != RAW:
        raise WireError(f"unknown codec {codec}")
    try:
        return _adapter.validate_json(body)
    except ValidationError as exc:
        raise WireError(
            f"invalid message: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}"
        ) from exc
