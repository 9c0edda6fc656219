"""Refuse media URLs that point into the backend's own network (server-side request forgery).

Task data is user-controlled, so a task's image URL could name a loopback, private,
link-local (cloud metadata at 169.254.169.254), shared (100.64.0.0/10, where some clouds
serve metadata) or otherwise internal address. Every address that is not globally routable
is refused, except the configured Label Studio host and hosts or networks the owner allows
(ALFAMIX_ALLOWED_MEDIA_HOSTS).

``check`` returns the address it checked, and the fetcher connects to that address: a host
name that resolves to a public address for the check and to an internal one for the
connection (DNS rebinding) never gets a second resolution.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedURLError(ValueError):
    """The URL's host is internal and not allowed."""


@dataclass(frozen=True)
class URLGuard:
    allowed_hosts: frozenset[str] = frozenset()  # lower-case host names, exempt as written
    allowed_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)

    @classmethod
    def from_settings(cls, label_studio_url: str | None, allowed: Iterable[str]) -> URLGuard:
        hosts, networks = set(), []
        if label_studio_url:
            hosts.add((urlsplit(label_studio_url).hostname or "").lower())
        for entry in allowed:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower())
        return cls(frozenset(hosts), tuple(networks))

    def check(self, url: str) -> IPAddress | None:
        """The address to connect to, once every address the URL's host resolves to is public or
        allowed; None for a host allowed by name (it is trusted as named). Raises BlockedURLError."""
        host = (urlsplit(url).hostname or "").lower()
        if not host:
            raise BlockedURLError(f"{url[:60]!r} has no host")
        if host in self.allowed_hosts:
            return None
        addresses = _resolve(host)
        for address in addresses:
            if _is_internal(address) and not any(address in network for network in self.allowed_networks):
                raise BlockedURLError(f"host {host!r} resolves to the internal address {address}")
        return addresses[0]


def _resolve(host: str) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as error:
        raise BlockedURLError(f"host {host!r} does not resolve: {error.strerror}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _is_internal(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # is_global is False for private, loopback, link-local, shared (100.64.0.0/10), reserved,
    # documentation and benchmarking networks; multicast is refused besides.
    return not address.is_global or address.is_multicast
