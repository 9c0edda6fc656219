"""What a job or a prediction needs from the outside world, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis import Redis

from backend.errors import NotConfiguredError
from backend.labelstudio.client import LabelStudioClient
from backend.labelstudio.media import MediaFetcher
from backend.labelstudio.url_guard import URLGuard
from backend.settings import Settings
from backend.state.ledger import LabelLedger
from backend.state.store import ProjectStore, open_project_ledger, open_project_store


@dataclass
class Context:
    settings: Settings
    client: LabelStudioClient
    fetcher: MediaFetcher
    connection: Redis | None = None  # where project state lives when workers are separate processes

    def store(self, project_id: int) -> ProjectStore:
        return open_project_store(self.settings.model_dir, project_id, self.connection)

    def ledger(self, project_id: int) -> LabelLedger:
        return open_project_ledger(self.settings.model_dir, project_id, self.connection)


def build_context(settings: Settings, connection: Redis | None = None) -> Context:
    if not settings.label_studio_url or not settings.label_studio_api_key:
        missing = "LABEL_STUDIO_URL" if not settings.label_studio_url else "LABEL_STUDIO_API_KEY"
        raise NotConfiguredError(
            f"{missing} is not set on the ML backend: it needs Label Studio's URL and an API key "
            "(Account & Settings > Personal Access Token) to read annotations and push predictions"
        )
    client = LabelStudioClient(
        settings.label_studio_url, settings.label_studio_api_key, write_pause=settings.write_pause
    )
    fetcher = MediaFetcher(
        client=httpx.Client(timeout=httpx.Timeout(settings.download_timeout)),
        label_studio_url=settings.label_studio_url,
        auth_headers=client.auth_headers,
        max_bytes=settings.max_image_bytes,
        local_files_root=settings.local_files_document_root,
        guard=URLGuard.from_settings(settings.label_studio_url, settings.allowed_media_hosts),
    )
    return Context(settings, client, fetcher, connection)
