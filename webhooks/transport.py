"""One POST to a receiver, guarded: http(s) only, short timeouts, no redirect followed, and no private,
loopback or link-local address unless allowed (so a webhook cannot be aimed at Beacon's own network).
No Django.

The address check is made on what the name resolves to at connection time, for every connection,
not only when the URL is saved: a name that later resolves to 127.0.0.1 is refused too.
"""
import http.client
import ipaddress
import socket
import time
from typing import NamedTuple
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
# What is read of an answer, at most: its body means nothing to Beacon.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "Beacon-Webhooks/1"


class UrlRefused(ValueError):
    pass


class Outcome(NamedTuple):
    succeeded: bool
    status_code: int | None
    error: str
    response_ms: int


def _address_refused(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def _resolve(host: str, port: int) -> list[tuple]:
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise UrlRefused(f"The host {host[:100]!r} cannot be resolved.") from error


def _vetted(host: str, port: int, *, allow_private: bool) -> list[tuple]:
    found = _resolve(host, port)
    if not allow_private and any(_address_refused(info[4][0]) for info in found):
        raise UrlRefused(f"The host {host[:100]!r} is a private, loopback or reserved address.")
    return found


def url_check(url: str, *, allow_private: bool) -> tuple[str, str, int, str]:
    """The URL's scheme, host, port and path with query; raises UrlRefused with a reason."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"A URL of at most {MAX_URL_LENGTH} characters is required.")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise UrlRefused("A URL holds no spaces, control or non-ASCII characters (percent-encode them).")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"Not a valid URL: {error}.") from None
    if parts.scheme not in {"http", "https"}:
        raise UrlRefused("Only http and https URLs are allowed.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("A URL carries no user name or password; the receiver checks the signature instead.")
    host = parts.hostname
    if not host:
        raise UrlRefused("The URL has no host.")
    port = port or (443 if parts.scheme == "https" else 80)
    if not allow_private:
        try:
            literal = _address_refused(host)
        except ValueError:
            _vetted(host, port, allow_private=False)
        else:
            if literal:
                raise UrlRefused(f"The host {host!r} is a private, loopback or reserved address.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


def _guarded_connect(allow_private: bool):
    def create_connection(address, timeout=None, source_address=None):
        host, port = address
        last_error: OSError | None = None
        for family, kind, protocol, _, sockaddr in _vetted(host, port, allow_private=allow_private):
            sock = socket.socket(family, kind, protocol)
            try:
                sock.settimeout(timeout)
                sock.connect(sockaddr)
                return sock
            except OSError as error:
                sock.close()
                last_error = error
        raise last_error or OSError(f"No address to connect to for {host!r}.")

    return create_connection


def post(url: str, *, body: bytes, headers: dict[str, str], timeout: float, allow_private: bool) -> Outcome:
    """POSTs `body`; a 2xx answer is a success, anything else (a redirect included) a failure with why."""
    started = time.monotonic()

    def outcome(succeeded: bool, status_code: int | None, error: str) -> Outcome:
        return Outcome(succeeded, status_code, error[:1000], int((time.monotonic() - started) * 1000))

    try:
        scheme, host, port, path = url_check(url, allow_private=allow_private)
    except UrlRefused as refused:
        return outcome(False, None, str(refused))
    kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    connection = kind(host, port, timeout=timeout)
    connection._create_connection = _guarded_connect(allow_private)
    try:
        connection.request("POST", path, body=body, headers={
            **headers, "Content-Type": "application/json", "User-Agent": USER_AGENT,
        })
        response = connection.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        status = response.status
    except UrlRefused as refused:
        return outcome(False, None, str(refused))
    except (OSError, http.client.HTTPException) as error:
        return outcome(False, None, f"{type(error).__name__}: {error}")
    finally:
        connection.close()
    if 200 <= status < 300:
        return outcome(True, status, "")
    if 300 <= status < 400:
        return outcome(False, status, f"HTTP {status}: redirects are not followed; give the final URL.")
    return outcome(False, status, f"HTTP {status}")
