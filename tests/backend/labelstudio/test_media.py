"""Image fetching against real local HTTP servers: where the API key goes, size limits, redaction."""

from __future__ import annotations

import base64
import dataclasses
import io
import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from backend.errors import MediaError
from backend.labelstudio.media import RETRY_DELAYS, MediaFetcher, decode_image
from backend.labelstudio.url_guard import BlockedURLError, URLGuard

AUTH = {"Authorization": "Token ls-key-5e1d"}
SECRET_QUERY = "?X-Amz-Signature=secret-sig"
FAST_RETRIES = (0.01, 0.01)  # two retries, as RETRY_DELAYS gives, without its seconds of waiting


def png_bytes(width: int, height: int, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = png_bytes(7, 5)


class RecordingServer:
    """An HTTP/1.0 server on 127.0.0.1 that answers fixed routes and records each request's path and headers."""

    def __init__(self) -> None:
        # path -> (status, headers, body, send Content-Length)
        self.routes: dict[str, tuple[int, dict[str, str], bytes, bool]] = {}
        self.first_answers: dict[str, list[int]] = {}  # path -> statuses sent, one per request, before its route
        self.requests: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.requests.append((self.path, {key.lower(): value for key, value in self.headers.items()}))
                path = urlsplit(self.path).path
                status, headers, body, with_length = recorder.routes.get(path, (404, {}, b"not found", True))
                if recorder.first_answers.get(path):
                    status, headers, body, with_length = recorder.first_answers[path].pop(0), {}, b"busy", True
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if with_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RecordingServer, RecordingServer]]:
    """Label Studio's host and another host (another port, so another origin)."""
    label_studio, other = RecordingServer(), RecordingServer()
    yield label_studio, other
    label_studio.close()
    other.close()


@pytest.fixture
def label_studio(servers: tuple[RecordingServer, RecordingServer]) -> RecordingServer:
    servers[0].routes.clear()
    servers[0].first_answers.clear()
    servers[0].requests.clear()
    return servers[0]


@pytest.fixture
def other(servers: tuple[RecordingServer, RecordingServer]) -> RecordingServer:
    servers[1].routes.clear()
    servers[1].first_answers.clear()
    servers[1].requests.clear()
    return servers[1]


@pytest.fixture
def fetcher(label_studio: RecordingServer) -> Iterator[MediaFetcher]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield MediaFetcher(
            client=client,
            label_studio_url=label_studio.origin,
            auth_headers=lambda: dict(AUTH),
            max_bytes=1024,
            retry_delays=FAST_RETRIES,
        )


def test_relative_upload_uri_is_fetched_from_label_studio_with_the_api_key(
    fetcher: MediaFetcher, label_studio: RecordingServer
) -> None:
    label_studio.routes["/data/upload/x.png"] = (200, {"Content-Type": "image/png"}, PNG, True)

    data = fetcher.fetch(1, "/data/upload/x.png")

    assert data == PNG
    assert [(path, headers.get("authorization")) for path, headers in label_studio.requests] == [
        ("/data/upload/x.png", "Token ls-key-5e1d")
    ]


def test_absolute_url_on_the_label_studio_host_carries_the_api_key(
    fetcher: MediaFetcher, label_studio: RecordingServer
) -> None:
    label_studio.routes["/data/upload/x.png"] = (200, {}, PNG, True)

    assert fetcher.fetch(1, f"{label_studio.origin}/data/upload/x.png") == PNG
    assert label_studio.requests[0][1].get("authorization") == "Token ls-key-5e1d"


def test_absolute_url_on_another_host_is_fetched_without_the_api_key(
    fetcher: MediaFetcher, other: RecordingServer
) -> None:
    other.routes["/img.png"] = (200, {}, PNG, True)

    data = fetcher.fetch(1, f"{other.origin}/img.png")

    assert data == PNG
    assert [(path, "authorization" in headers) for path, headers in other.requests] == [("/img.png", False)]


def test_redirect_from_label_studio_to_another_host_drops_the_api_key(
    fetcher: MediaFetcher, label_studio: RecordingServer, other: RecordingServer
) -> None:
    label_studio.routes["/data/upload/moved.png"] = (302, {"Location": f"{other.origin}/img.png"}, b"", True)
    other.routes["/img.png"] = (200, {}, PNG, True)

    data = fetcher.fetch(1, "/data/upload/moved.png")

    assert data == PNG
    assert label_studio.requests[0][1].get("authorization") == "Token ls-key-5e1d"
    assert [(path, "authorization" in headers) for path, headers in other.requests] == [("/img.png", False)]


def test_cloud_uri_is_presigned_by_label_studio_and_fetched_without_the_api_key(
    fetcher: MediaFetcher, label_studio: RecordingServer, other: RecordingServer
) -> None:
    label_studio.routes["/tasks/7/presign/"] = (
        303,
        {"Location": f"{other.origin}/signed.png{SECRET_QUERY}"},
        b"",
        True,
    )
    other.routes["/signed.png"] = (200, {}, PNG, True)

    data = fetcher.fetch(7, "s3://bucket/dir/key.png")

    encoded = base64.urlsafe_b64encode(b"s3://bucket/dir/key.png").decode()
    assert data == PNG
    assert [(path, headers.get("authorization")) for path, headers in label_studio.requests] == [
        (f"/tasks/7/presign/?fileuri={encoded}", "Token ls-key-5e1d")
    ]
    assert [(path, "authorization" in headers) for path, headers in other.requests] == [
        (f"/signed.png{SECRET_QUERY}", False)
    ]


def test_body_over_max_bytes_with_content_length_raises(fetcher: MediaFetcher, other: RecordingServer) -> None:
    other.routes["/big.bin"] = (200, {}, b"\0" * 5000, True)

    with pytest.raises(MediaError) as raised:
        fetcher.fetch(1, f"{other.origin}/big.bin{SECRET_QUERY}")

    assert str(raised.value) == f"task 1: {other.origin}/big.bin is 5000 bytes, over the 1024 limit"


def test_body_over_max_bytes_without_content_length_raises(fetcher: MediaFetcher, other: RecordingServer) -> None:
    other.routes["/stream.bin"] = (200, {}, b"\0" * 5000, False)

    with pytest.raises(MediaError) as raised:
        fetcher.fetch(1, f"{other.origin}/stream.bin{SECRET_QUERY}")

    assert str(raised.value) == f"task 1: {other.origin}/stream.bin is over the 1024 byte limit"


def test_http_error_status_raises_naming_the_status_without_the_query(
    fetcher: MediaFetcher, other: RecordingServer
) -> None:
    with pytest.raises(MediaError) as raised:
        fetcher.fetch(1, f"{other.origin}/missing.png{SECRET_QUERY}")

    assert str(raised.value) == f"task 1: GET {other.origin}/missing.png answered HTTP 404"


def test_a_busy_server_is_tried_again_until_it_answers(fetcher: MediaFetcher, other: RecordingServer) -> None:
    other.routes["/a.png"] = (200, {}, PNG, True)
    other.first_answers["/a.png"] = [503, 502]

    assert fetcher.fetch(1, f"{other.origin}/a.png") == PNG
    assert len(other.requests) == 3
    assert len(RETRY_DELAYS) == len(FAST_RETRIES)


def test_a_server_busy_on_every_try_fails_the_image_after_three_tries(
    fetcher: MediaFetcher, other: RecordingServer
) -> None:
    other.routes["/a.png"] = (200, {}, PNG, True)
    other.first_answers["/a.png"] = [503, 429, 500]

    with pytest.raises(MediaError) as raised:
        fetcher.fetch(1, f"{other.origin}/a.png{SECRET_QUERY}")

    assert str(raised.value) == f"task 1: GET {other.origin}/a.png answered HTTP 500"
    assert len(other.requests) == 3


def test_a_missing_image_is_not_tried_again(fetcher: MediaFetcher, other: RecordingServer) -> None:
    with pytest.raises(MediaError):
        fetcher.fetch(1, f"{other.origin}/missing.png")
    assert len(other.requests) == 1


def test_connection_failure_raises_without_the_query(fetcher: MediaFetcher) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with pytest.raises(MediaError) as raised:
        fetcher.fetch(1, f"http://127.0.0.1:{closed_port}/a.png{SECRET_QUERY}")

    assert str(raised.value) == f"task 1: GET http://127.0.0.1:{closed_port}/a.png failed: ConnectError"


def test_failed_presign_names_the_cloud_uri_not_the_presign_url(fetcher: MediaFetcher) -> None:
    with pytest.raises(MediaError) as raised:
        fetcher.fetch(7, "s3://bucket/key.png")

    assert str(raised.value) == "task 7: GET s3://bucket/key.png answered HTTP 404"


def test_local_files_uri_is_read_from_the_document_root(tmp_path: Path, label_studio: RecordingServer) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(PNG)
    with httpx.Client(trust_env=False) as client:
        fetcher = MediaFetcher(
            client, label_studio.origin, lambda: dict(AUTH), max_bytes=1024, local_files_root=tmp_path
        )

        assert fetcher.fetch(1, "/data/local-files/?d=sub/a.png") == PNG
    assert label_studio.requests == []


def test_local_files_uri_outside_the_document_root_is_refused(tmp_path: Path, label_studio: RecordingServer) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with httpx.Client(trust_env=False) as client:
        fetcher = MediaFetcher(client, label_studio.origin, lambda: dict(AUTH), max_bytes=1024, local_files_root=root)

        with pytest.raises(MediaError) as raised:
            fetcher.fetch(1, "/data/local-files/?d=../../etc/passwd")

    assert str(raised.value) == "task 1: '../../etc/passwd' lies outside LOCAL_FILES_DOCUMENT_ROOT"
    assert label_studio.requests == []


def test_unsupported_scheme_raises(fetcher: MediaFetcher) -> None:
    with pytest.raises(MediaError) as raised:
        fetcher.fetch(1, "ftp://files.example.com/a.png")

    assert str(raised.value) == "task 1: unsupported image URI scheme 'ftp'"


def test_relative_uri_without_label_studio_url_raises_without_the_query() -> None:
    with httpx.Client(trust_env=False) as client:
        fetcher = MediaFetcher(client, None, None, max_bytes=1024)

        with pytest.raises(MediaError) as raised:
            fetcher.fetch(1, "/data/upload/x.png?token=secret-sig")

    assert str(raised.value) == (
        "task 1: /data/upload/x.png is served by Label Studio, but LABEL_STUDIO_URL is not set"
    )


def test_decode_image_gives_the_image_with_its_size() -> None:
    image = decode_image(1, PNG, max_pixels=1_000_000)

    assert (image.size, image.mode) == ((7, 5), "RGB")


def test_decode_image_of_corrupt_bytes_raises() -> None:
    with pytest.raises(MediaError, match=r"^task 3: not a decodable image \(UnidentifiedImageError: "):
        decode_image(3, b"not an image at all", max_pixels=1_000_000)


def test_decode_image_of_truncated_png_raises() -> None:
    with pytest.raises(MediaError, match=r"^task 3: not a decodable image \(OSError: "):
        decode_image(3, png_bytes(64, 64)[:-40], max_pixels=1_000_000)


def test_decode_image_refuses_too_many_pixels_before_decoding() -> None:
    # Header intact, pixel data cut short: decoding would fail with another message, so the size check came first.
    data = png_bytes(3000, 3000, mode="L")[:200]

    with pytest.raises(MediaError) as raised:
        decode_image(3, data, max_pixels=1_000_000)

    assert str(raised.value) == "task 3: image is 3000x3000 pixels, over the 1000000 limit"


# --- server-side request forgery: internal hosts are refused on every hop --------------------


def guarded(fetcher: MediaFetcher, label_studio: RecordingServer, allowed: list[str]) -> MediaFetcher:
    return dataclasses.replace(fetcher, guard=URLGuard.from_settings(label_studio.origin, allowed))


def test_a_task_url_on_an_internal_host_is_refused_before_any_request(
    fetcher: MediaFetcher, label_studio: RecordingServer, other: RecordingServer
) -> None:
    other.routes["/img.png"] = (200, {}, PNG, True)
    internal = f"http://localhost:{other.origin.rsplit(':', 1)[1]}/img.png"
    with pytest.raises(MediaError, match=r"task 4: .* refused: host 'localhost' resolves to the internal address"):
        guarded(fetcher, label_studio, []).fetch(4, internal)
    assert other.requests == []


def test_the_label_studio_host_and_allowed_hosts_pass_the_guard(
    fetcher: MediaFetcher, label_studio: RecordingServer, other: RecordingServer
) -> None:
    label_studio.routes["/data/upload/x.png"] = (200, {}, PNG, True)
    other.routes["/img.png"] = (200, {}, PNG, True)
    assert guarded(fetcher, label_studio, []).fetch(1, "/data/upload/x.png") == PNG
    allowed = f"http://localhost:{other.origin.rsplit(':', 1)[1]}/img.png"
    assert guarded(fetcher, label_studio, ["localhost"]).fetch(1, allowed) == PNG


def test_a_redirect_from_an_allowed_host_into_the_internal_network_is_refused(
    fetcher: MediaFetcher, label_studio: RecordingServer, other: RecordingServer
) -> None:
    port = other.origin.rsplit(":", 1)[1]
    other.routes["/hop.png"] = (302, {"Location": f"http://127.0.0.2:{port}/img.png"}, b"", True)
    other.routes["/img.png"] = (200, {}, PNG, True)
    with pytest.raises(MediaError, match=r"refused: host '127.0.0.2' resolves to the internal address 127.0.0.2"):
        guarded(fetcher, label_studio, ["localhost"]).fetch(1, f"http://localhost:{port}/hop.png")
    assert [path for path, _ in other.requests] == ["/hop.png"]


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("http://169.254.169.254/latest/meta-data/", True),  # cloud metadata (link-local)
        ("http://10.1.2.3/a.png", True),
        ("http://192.168.0.7/a.png", True),
        ("http://[::1]/a.png", True),
        ("http://[::ffff:127.0.0.1]/a.png", True),  # loopback written as IPv4-mapped IPv6
        ("http://0.0.0.0/a.png", True),
        ("http://100.100.100.200/latest/meta-data/", True),  # shared address space (a cloud's metadata)
        ("http://198.18.0.1/a.png", True),  # benchmarking network: not globally routable
        ("http://[fd00::1]/a.png", True),  # IPv6 unique local
        ("http://224.0.0.1/a.png", True),  # multicast
        ("http://93.184.216.34/a.png", False),  # a public address
        ("http://10.9.9.9/a.png", False),  # inside the allowed network below
        ("http://no-such-host.invalid/a.png", True),
    ],
)
def test_url_guard_classifies_addresses(url: str, refused: bool) -> None:
    guard = URLGuard.from_settings("http://label-studio:8080", ["10.9.0.0/16"])
    if refused:
        with pytest.raises(BlockedURLError):
            guard.check(url)
    else:
        guard.check(url)


def test_the_connection_goes_to_the_address_that_was_checked(
    fetcher: MediaFetcher, label_studio: RecordingServer, other: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolves to an allowed address for the check, to another one after."""
    other.routes["/img.png"] = (200, {}, PNG, True)
    port = other.origin.rsplit(":", 1)[1]
    answers = iter(["127.0.0.1", "127.0.0.2", "127.0.0.2"])
    resolved: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "images.example":
            return real_getaddrinfo(host, *args, **kwargs)
        resolved.append(address := next(answers))
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 0))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)

    assert guarded(fetcher, label_studio, ["127.0.0.1/32"]).fetch(1, f"http://images.example:{port}/img.png") == PNG
    assert resolved == ["127.0.0.1"]  # the name was resolved once, for the check
    assert [(path, headers["host"]) for path, headers in other.requests] == [("/img.png", f"images.example:{port}")]


def test_an_https_request_to_a_pinned_address_keeps_the_name_for_sni() -> None:
    request = MediaFetcher._request("https://user@images.example/a.png?x=1", {}, ipaddress.ip_address("2001:db8::7"))
    assert request["url"] == "https://[2001:db8::7]/a.png?x=1"
    assert request["headers"] == {"Host": "images.example"}
    assert request["extensions"] == {"sni_hostname": "images.example"}
