"""What a job or a prediction needs from the outside world, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backend.errors import NotConfiguredError
from backend.ls_client import LabelStudioClient
from backend.media import MediaFetcher
from backend.settings import Settings


@dataclass
class Context:
    settings: Settings
    client: LabelStudioClient
    fetcher: MediaFetcher


def build_context(settings: Settings) -> Context:
    if not settings.label_studio_url or not settings.label_studio_api_key:
        missing = "LABEL_STUDIO_URL" if not settings.label_studio_url else "LABEL_STUDIO_API_KEY"
        raise NotConfiguredError(
            f"{missing} is not set on the ML backend: it needs Label Studio's URL and an API key "
            "(Account & Settings > Personal Access Token) to read annotations and push predictions"
        )
    client = LabelStudioClient(settings.label_studio_url, settings.label_studio_api_key)
    fetcher = MediaFetcher(
        client=httpx.Client(timeout=httpx.Timeout(settings.download_timeout)),
        label_studio_url=settings.label_studio_url,
        auth_headers=client.auth_headers,
        max_bytes=settings.max_image_bytes,
        local_files_root=settings.local_files_document_root,
    )
    return Context(settings, client, fetcher)
