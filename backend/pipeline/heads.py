"""A version's classifier head in the project store: saved as a state_dict, loaded with weights_only=True."""

from __future__ import annotations

import io
from typing import Any

import torch

from backend.state.store import ProjectStore
from model.head import HeadConfig, build_head


def save_head(store: ProjectStore, model_version: str, head: torch.nn.Module) -> None:
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    store.save_head(model_version, buffer.getvalue())


def load_head(store: ProjectStore, model_version: str, meta: dict[str, Any]) -> torch.nn.Module:
    """The head as the version's meta describes it (kind, sizes), in eval mode on the CPU."""
    state_dict = torch.load(io.BytesIO(store.load_head(model_version)), map_location="cpu", weights_only=True)
    config = HeadConfig(kind=meta["head"]["kind"], hidden_dim=meta["head"]["hidden_dim"])
    head = build_head(meta["embedding_dim"], len(meta["labels"]), config)
    head.load_state_dict(state_dict)
    return head.eval()
