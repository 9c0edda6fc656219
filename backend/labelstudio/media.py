"""Fetch and decode one task's image from wherever Label Studio keeps it, with time and size bounds."""

from __future__ import annotations

import base64
import io
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit, urlunsplit

import httpx
from PIL import Image

from backend.errors import MediaError
from backend.labelstudio.url_guard import BlockedURLError, IPAddress, URLGuard

logger = logging.getLogger(__name__)

CLOUD_SCHEMES = ("s3", "gs", "azure-blob", "azure-spi")
MAX_REDIRECTS = 5
# Answers worth a second try: a busy or restarting server, a gateway between it and us.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_DELAYS = (0.5, 2.0)  # seconds before the second and the third try


class TransientMediaError(MediaError):
    """A failure that may pass: worth another try."""


@dataclass
class MediaFetcher:
    """Resolves the URIs Label Studio puts in task data:

    - ``/data/upload/...`` and other paths on the Label Studio host: fetched with the API key;
    - ``/data/local-files/?d=...``: read from LOCAL_FILES_DOCUMENT_ROOT when it is shared,
      otherwise through Label Studio;
    - ``http(s)://``: fetched directly (the API key only goes to the Label Studio host);
    - ``s3://``, ``gs://``, ``azure-blob://``: presigned by Label Studio's task presign endpoint.
    """

    client: httpx.Client
    label_studio_url: str | None
    auth_headers: Callable[[], dict[str, str]] | None
    max_bytes: int
    local_files_root: Path | None = None
    guard: URLGuard | None = None  # None: no SSRF check (tests that serve images from localhost)
    retry_delays: tuple[float, ...] = RETRY_DELAYS

    def fetch(self, task_id: int, uri: str) -> bytes:
        scheme = urlsplit(uri).scheme.lower()
        if uri.startswith("/data/local-files/") and self.local_files_root is not None:
            return self._read_local_file(task_id, uri)
        if uri.startswith("/"):
            return self._get(task_id, self._label_studio_origin(task_id, uri) + uri, authenticated=True)
        if scheme in ("http", "https"):
            same_host = self.label_studio_url is not None and _origin(uri) == _origin(self.label_studio_url)
            return self._get(task_id, uri, authenticated=same_host)
        if scheme in CLOUD_SCHEMES:
            encoded = base64.urlsafe_b64encode(uri.encode()).decode()
            presign = f"{self._label_studio_origin(task_id, uri)}/tasks/{task_id}/presign/?fileuri={encoded}"
            return self._get(task_id, presign, authenticated=True, shown=uri)
        raise MediaError(f"task {task_id}: unsupported image URI scheme {scheme or uri[:20]!r}")

    def _label_studio_origin(self, task_id: int, uri: str) -> str:
        if not self.label_studio_url:
            raise MediaError(
                f"task {task_id}: {_redact(uri)} is served by Label Studio, but LABEL_STUDIO_URL is not set"
            )
        return self.label_studio_url.rstrip("/")

    def _get(self, task_id: int, url: str, *, authenticated: bool, shown: str | None = None) -> bytes:
        """GET with retries: a transient failure (a connection error, a timeout, a 5xx or 429)
        is tried again after RETRY_DELAYS, so that one bad second does not skip an image."""
        where = _redact(shown or url)
        for delay in (*self.retry_delays, None):
            try:
                return self._get_once(task_id, url, authenticated=authenticated, where=where)
            except TransientMediaError as error:
                if delay is None:
                    raise MediaError(str(error)) from None
                logger.info("%s; trying again in %.1f s", error, delay)
                time.sleep(delay)
        raise AssertionError("unreachable: the last try returns or raises")

    def _get_once(self, task_id: int, url: str, *, authenticated: bool, where: str) -> bytes:
        headers = self.auth_headers() if authenticated and self.auth_headers else {}
        try:
            for _ in range(MAX_REDIRECTS + 1):
                pinned = self._check_host(task_id, url, where)
                request = self._request(url, headers, pinned)
                with self.client.stream(**request) as response:
                    if response.is_redirect:
                        target = urljoin(url, response.headers.get("location", ""))
                        if _origin(target) != _origin(url):
                            headers = {}  # credentials never follow a redirect to another host
                        url = target
                        continue
                    return self._read_body(task_id, response, where)
        except httpx.TransportError as error:
            raise TransientMediaError(f"task {task_id}: GET {where} failed: {type(error).__name__}") from None
        except httpx.HTTPError as error:
            raise MediaError(f"task {task_id}: GET {where} failed: {type(error).__name__}") from None
        raise MediaError(f"task {task_id}: GET {where} redirected more than {MAX_REDIRECTS} times")

    def _check_host(self, task_id: int, url: str, where: str) -> IPAddress | None:
        """Every hop, redirects included: a public host may redirect into the internal network.
        Returns the address checked, to connect to; None where no address is pinned."""
        if self.guard is None:
            return None
        try:
            return self.guard.check(url)
        except BlockedURLError as error:
            raise MediaError(f"task {task_id}: {where} refused: {error}") from None

    @staticmethod
    def _request(url: str, headers: dict[str, str], pinned: IPAddress | None) -> dict[str, Any]:
        """GET ``url``, connecting to ``pinned`` when given: the host name still goes in the Host
        header and, for HTTPS, in SNI, where the certificate is checked against it."""
        request: dict[str, Any] = {"method": "GET", "url": url, "headers": headers, "follow_redirects": False}
        if pinned is None:
            return request
        parts = urlsplit(url)
        address = f"[{pinned}]" if pinned.version == 6 else str(pinned)
        netloc = f"{address}:{parts.port}" if parts.port else address
        request["url"] = urlunsplit(parts._replace(netloc=netloc))
        request["headers"] = {**headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
        if parts.scheme == "https":
            request["extensions"] = {"sni_hostname": parts.hostname}
        return request

    def _read_body(self, task_id: int, response: httpx.Response, where: str) -> bytes:
        if response.status_code != 200:
            error = TransientMediaError if response.status_code in RETRY_STATUSES else MediaError
            raise error(f"task {task_id}: GET {where} answered HTTP {response.status_code}")
        declared = int(response.headers.get("content-length") or 0)
        if declared > self.max_bytes:
            raise MediaError(f"task {task_id}: {where} is {declared} bytes, over the {self.max_bytes} limit")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise MediaError(f"task {task_id}: {where} is over the {self.max_bytes} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    def _read_local_file(self, task_id: int, uri: str) -> bytes:
        assert self.local_files_root is not None
        relative = (parse_qs(urlsplit(uri).query).get("d") or [""])[0]
        root = self.local_files_root.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise MediaError(f"task {task_id}: {relative!r} lies outside LOCAL_FILES_DOCUMENT_ROOT")
        try:
            size = path.stat().st_size
            if size > self.max_bytes:
                raise MediaError(f"task {task_id}: {relative} is {size} bytes, over the {self.max_bytes} limit")
            return path.read_bytes()
        except OSError as error:
            raise MediaError(f"task {task_id}: cannot read local file {relative!r}: {error.strerror}") from None


def decode_image(task_id: int, data: bytes, max_pixels: int) -> Image.Image:
    """Decode image bytes, refusing files whose pixel count exceeds ``max_pixels`` before decoding them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise MediaError(f"task {task_id}: image is {width}x{height} pixels, over the {max_pixels} limit")
            image.load()
    except MediaError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise MediaError(f"task {task_id}: not a decodable image ({type(error).__name__}: {error})") from None
    return image


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _redact(url: str) -> str:
    """Drop the query string: presigned URLs carry credentials there."""
    parts = urlsplit(url)
    if parts.path.startswith("/data/local-files"):
        return url  # the query is the file path, not a secret
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else parts.path
