"""Redis replies as text: one decoder for every reader of Redis."""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    """A Redis reply as text, whether the connection decodes replies or not."""
    return value.decode() if isinstance(value, bytes) else value
