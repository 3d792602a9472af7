"""Dead-letter records: what a rejected message becomes (pure)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Final

from processors.domain.contract import Rejection

#: Larger originals keep their first bytes and a SHA-256 of the whole.
ORIGINAL_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message was read."""

    topic: str
    partition: int
    offset: int


def dead_letter(
    raw: bytes | None, key: bytes | None, source: Source, rejection: Rejection
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The dead-letter message value (JSON) and headers for one rejected input."""
    original = raw or b""
    kept = original[:ORIGINAL_LIMIT]
    body = {
        "reason": rejection.reason,
        "message": rejection.message,
        "source_topic": source.topic,
        "source_partition": source.partition,
        "source_offset": source.offset,
        "key": key.decode("utf-8", "replace") if key is not None else None,
        "original": kept.decode("utf-8", "replace"),
        "original_base64": base64.b64encode(kept).decode(),
        "original_size": len(original),
        "truncated": len(original) > ORIGINAL_LIMIT,
        "original_sha256": hashlib.sha256(original).hexdigest(),
    }
    headers = [
        ("dlq.reason", rejection.reason.encode()),
        ("dlq.source", f"{source.topic}/{source.partition}/{source.offset}".encode()),
    ]
    return json.dumps(body, ensure_ascii=False).encode(), headers
