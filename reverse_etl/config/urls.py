"""URLs in configuration: http(s) only, and plain http only to this machine."""

from __future__ import annotations

from ipaddress import ip_address
from urllib.parse import urlsplit


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(value: str, key: str) -> str:
    """``value`` without a trailing slash; ValueError unless https, or http to a loopback host.

    Credentials and customer data must never cross a network in clear text; plain http is
    allowed only for the local emulators.
    """
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{key} {value!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"{key} must use https unless the host is loopback (127.0.0.1 / localhost)")
    return value.rstrip("/")
