"""Copy a provider's result image into our bucket before the provider deletes it.

The URL comes from the provider, so it is untrusted input: fetched carelessly it would let
whoever controls it make our Lambda read the instance metadata service or anything else on
the private network (SSRF), fill our memory or our bucket. The copier therefore:

* accepts https only (http only when local configuration says so), no credentials in the
  URL, and only hosts on the allow-list: exact names by default, ``*.example.com`` suffix
  patterns only when configured separately and on purpose (anyone can create a bucket on
  ``*.amazonaws.com`` or a distribution on ``*.cloudfront.net``);
* resolves the host itself and refuses the hop if ANY address is loopback (unless local
  configuration allows it), private, link-local, the metadata address, multicast, reserved,
  unspecified or not globally routable, including those addresses embedded in IPv4-mapped,
  6to4 and NAT64 IPv6 forms; literal IP hosts are checked the same way;
* never lets the HTTP library follow redirects: each ``Location`` is a new hop, validated
  like the first one before anything connects to it, at most ``max_redirects`` times;
* sends no cookies, credentials, proxy settings or environment configuration: every request
  is built afresh and sent through the copier's own transport adapter.

DNS rebinding: the copier connects to the addresses it validated, never to the name. Each
hop resolves the host once, and the validated addresses are pinned on the transport: the
socket is opened to the pinned IP while the Host header, TLS SNI and certificate
verification still use the host name. A name that answers a public address when checked
and 169.254.169.254 a moment later cannot move the connection, because there is no second
lookup. A request for a host without a pin fails closed before any socket is opened, which
also covers any disagreement between the URL parser used here and the one requests uses.
We chose pinning over checking the socket's peer after connecting: by the time that check
runs, a TCP handshake has already reached the unsafe address. The peer is still compared
with the pinned address after connecting, as a cheap guard against surprises below us.

Time: besides the connect and per-read timeouts, each object has a total deadline: a body
that trickles (one byte just inside every read timeout) is cut once the deadline passes, at
most one read timeout later, instead of running until Lambda kills the copy.

Memory: the body is read in small chunks with a running byte cap (a declared
Content-Length above the cap is refused before reading; a server that omits or lies about
it is cut off at ``max_bytes + 1``) and uploaded as it arrives, one part of
``PART_SIZE`` bytes at a time; a result smaller than one part is a single PutObject. Width
and height come from the header bytes only (Pillow for JPEG and PNG, the VP8/VP8L/VP8X
header for WebP, which Pillow cannot size from a prefix). Content type and magic bytes are
checked before anything is written; a failure after a multipart upload started aborts it,
so a refused result leaves nothing in the bucket.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util import connection as urllib3_connection
from urllib3.util import parse_url

from avatar_core.errors import ResultExpired, ResultFetchFailed, ResultRefused, UnsafeSource

if TYPE_CHECKING:
    from avatar_core.settings import Settings

logger = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024
"""Bytes per multipart part, and so roughly the most of a body held in memory at once."""

READ_CHUNK = 64 * 1024
HEADER_PROBE_LIMIT = 1024 * 1024
"""How far into the body we look for the image's dimensions before giving up."""

_FORMAT_BY_MEDIA_TYPE = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_MAGIC_LENGTH = 12
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 429})
DEFAULT_PORTS = {"http": 80, "https": 443}
_REQUEST_HEADERS = {
    "Accept": ", ".join(_FORMAT_BY_MEDIA_TYPE),
    "Accept-Encoding": "identity",
    "User-Agent": "avatar-pipeline-result-copier",
}

_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class CopyPolicy:
    """Where results may come from and how much of them we take."""

    allowed_hosts: tuple[str, ...]
    allowed_patterns: tuple[str, ...] = ()
    allow_loopback: bool = False
    allow_http: bool = False
    max_bytes: int = 25 * 1024 * 1024
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_redirects: int = 3

    def __post_init__(self) -> None:
        hosts = tuple(normalise_host(host) for host in self.allowed_hosts)
        for host in hosts:
            if not host or "*" in host:
                raise ValueError(
                    f"allowed host {host!r}: exact host names only; a '*.example.com' "
                    "pattern belongs in the separate, explicit pattern list"
                )
        patterns = tuple(normalise_host(pattern) for pattern in self.allowed_patterns)
        for pattern in patterns:
            suffix = pattern[2:] if pattern.startswith("*.") else ""
            if not suffix or "*" in suffix or "." not in suffix:
                raise ValueError(
                    f"allowed host pattern {pattern!r}: use '*.example.com' (a subdomain "
                    "wildcard under a registrable name)"
                )
        object.__setattr__(self, "allowed_hosts", hosts)
        object.__setattr__(self, "allowed_patterns", patterns)
        if self.max_bytes < 1 or self.max_redirects < 0:
            raise ValueError("max_bytes must be positive and max_redirects not negative")
        if self.connect_timeout <= 0 or self.read_timeout <= 0 or self.total_timeout <= 0:
            raise ValueError("timeouts must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> CopyPolicy:
        return cls(
            allowed_hosts=tuple(settings.result_allowed_hosts),
            allowed_patterns=tuple(settings.result_allowed_host_patterns),
            allow_loopback=settings.result_allow_loopback,
            allow_http=settings.result_allow_http,
            max_bytes=settings.result_max_bytes,
            connect_timeout=settings.result_connect_timeout_seconds,
            read_timeout=settings.result_read_timeout_seconds,
            total_timeout=settings.result_total_timeout_seconds,
        )

    def allows_host(self, host: str) -> bool:
        host = normalise_host(host)
        return host in self.allowed_hosts or any(
            host.endswith(pattern[1:]) for pattern in self.allowed_patterns
        )


@dataclass(frozen=True)
class CopiedObject:
    key: str
    content_type: str
    size: int
    width: int
    height: int


def unsafe_address_reason(address: str, *, allow_loopback: bool) -> str | None:
    """Why we never connect to ``address``; None for a public unicast address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "not an IP address"
    if ip in _METADATA_ADDRESSES:
        return "the cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = unsafe_address_reason(str(embedded), allow_loopback=allow_loopback)
            return f"{reason}, embedded in {ip}" if reason else None
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    kinds = (
        ("an unspecified", ip.is_unspecified),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved),
        ("a site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("a private", ip.is_private),
        ("a not globally routable", not ip.is_global),
    )
    return next((f"{kind} address" for kind, hit in kinds if hit), None)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its order of preference."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ResultCopier:
    """Copies one result URL into ``bucket`` under a key, or raises a typed error.

    ``session`` may supply a CA bundle (``session.verify`` when it is a path, e.g. a local
    stack's private CA); certificates are always verified. Nothing else of the session is
    used: not its cookies, auth, headers, proxies, environment or other mounted adapters.
    The copier mounts its address-pinning adapter on the session and sends through it.
    """

    def __init__(
        self,
        s3_client: Any,
        bucket: str,
        policy: CopyPolicy,
        session: requests.Session | None = None,
        resolve: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        self._s3 = s3_client
        self._bucket = bucket
        self._policy = policy
        self._resolve = resolve or resolve_host
        session = session or requests.Session()
        self._verify: bool | str = session.verify if isinstance(session.verify, str) else True
        self._transport = PinningAdapter()
        session.mount("https://", self._transport)
        session.mount("http://", self._transport)

    def copy(self, url: str, key: str) -> CopiedObject:
        deadline = time.monotonic() + self._policy.total_timeout
        response = self._open(url)
        with closing(response):
            where = _where(response.url)
            _check_status(response.status_code, where)
            media_type = _accepted_media_type(response, where)
            self._check_declared_size(response, where)
            chunks = _capped_chunks(
                response, self._policy.max_bytes, where, deadline, self._policy.total_timeout
            )
            head, width, height = _read_header(chunks, _FORMAT_BY_MEDIA_TYPE[media_type], where)
            size = self._store(key, media_type, head, chunks)
        return CopiedObject(key=key, content_type=media_type, size=size, width=width, height=height)

    # --- fetching ------------------------------------------------------------------------

    def _open(self, url: str) -> requests.Response:
        """The first non-redirect answer, every hop validated before it is connected to."""
        for _ in range(self._policy.max_redirects + 1):
            request = self._validated_request(url)
            response = self._send(request)
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECT_STATUSES or not location:
                return response
            response.close()
            url = urljoin(str(request.url), location)
        raise ResultRefused(
            f"{_where(url)}: more than {self._policy.max_redirects} redirects, not following"
        )

    def _validated_request(self, url: str) -> requests.PreparedRequest:
        try:
            request = requests.Request("GET", url, headers=_REQUEST_HEADERS).prepare()
            parsed = parse_url(str(request.url))
        except (requests.RequestException, ValueError) as error:
            raise UnsafeSource(f"not a URL we download from ({type(error).__name__})") from error
        scheme = (parsed.scheme or "").lower()
        if scheme != "https" and not (scheme == "http" and self._policy.allow_http):
            raise UnsafeSource(f"{_where(url)}: results are downloaded over https only")
        if parsed.auth:
            raise UnsafeSource(f"{_where(url)}: the URL carries credentials")
        host = normalise_host(parsed.host or "")
        if not host or not self._policy.allows_host(host):
            raise UnsafeSource(f"{host or 'no host'} is not on the result host allow-list")
        port = parsed.port or DEFAULT_PORTS[scheme]
        self._transport.pin(scheme, host, port, self._safe_addresses(host, port))
        return request

    def _safe_addresses(self, host: str, port: int) -> tuple[str, ...]:
        addresses = [host] if is_ip_literal(host) else self._resolved(host, port)
        for address in addresses:
            reason = unsafe_address_reason(address, allow_loopback=self._policy.allow_loopback)
            if reason:
                raise UnsafeSource(f"{host} resolves to {address}, {reason}")
        return tuple(str(ipaddress.ip_address(address)) for address in addresses)

    def _resolved(self, host: str, port: int) -> list[str]:
        try:
            addresses = self._resolve(host, port)
        except OSError as error:
            raise ResultFetchFailed(f"cannot resolve {host}: {error}") from error
        if not addresses:
            raise ResultFetchFailed(f"{host} resolves to no address")
        return addresses

    def _send(self, request: requests.PreparedRequest) -> requests.Response:
        try:
            return self._transport.send(
                request,
                stream=True,
                timeout=(self._policy.connect_timeout, self._policy.read_timeout),
                verify=self._verify,
                cert=None,
                proxies={},
            )
        except requests.RequestException as error:
            raise ResultFetchFailed(
                f"{_where(str(request.url))}: {type(error).__name__}: {error}"
            ) from error

    def _check_declared_size(self, response: requests.Response, where: str) -> None:
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > self._policy.max_bytes:
            raise ResultRefused(
                f"{where} declares {declared} bytes, more than the {self._policy.max_bytes} we take"
            )

    # --- storing -------------------------------------------------------------------------

    def _store(self, key: str, media_type: str, head: list[bytes], chunks: Iterator[bytes]) -> int:
        """Upload ``head`` and then ``chunks`` as they arrive; returns the object's size."""
        part = io.BytesIO()
        for chunk in head:
            part.write(chunk)
        head.clear()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            for chunk in chunks:
                part.write(chunk)
                if part.tell() >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self._s3.create_multipart_upload(
                            Bucket=self._bucket,
                            Key=key,
                            ContentType=media_type,
                            ServerSideEncryption="AES256",
                        )["UploadId"]
                    size += part.tell()
                    parts.append(self._upload_part(key, upload_id, len(parts) + 1, part))
                    part = io.BytesIO()
            size += part.tell()
            if upload_id is None:
                part.seek(0)
                self._s3.put_object(
                    Bucket=self._bucket,
                    Key=key,
                    Body=part,
                    ContentType=media_type,
                    ServerSideEncryption="AES256",
                )
                return size
            if part.tell():
                parts.append(self._upload_part(key, upload_id, len(parts) + 1, part))
            self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return size
        except BaseException:
            if upload_id is not None:
                self._abort(key, upload_id)
            raise

    def _upload_part(self, key: str, upload_id: str, number: int, part: io.BytesIO) -> dict:
        part.seek(0)
        answer = self._s3.upload_part(
            Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except Exception:
            # The original failure matters more; a lifecycle rule removes what is left.
            logger.exception("could not abort multipart upload %s of %s", upload_id, key)


# --- response checks -----------------------------------------------------------------------


def _check_status(status: int, where: str) -> None:
    if status == 200:
        return
    # Providers hand out results as presigned or CDN links: an expired one answers 403, a
    # deleted one 404 or 410. All three mean the result is gone for good.
    if status in (403, 404, 410):
        raise ResultExpired(
            "the provider no longer serves this result; it expired before it could be copied"
            f" ({where} answered {status})"
        )
    if status >= 500 or status in _RETRYABLE_CLIENT_STATUSES:
        raise ResultFetchFailed(f"{where} answered {status}")
    raise ResultRefused(f"{where} answered {status}")


def _accepted_media_type(response: requests.Response, where: str) -> str:
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in _FORMAT_BY_MEDIA_TYPE:
        raise ResultRefused(f"{where} is {media_type or 'untyped'}, not a JPEG, PNG or WebP image")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ResultRefused(f"{where} is sent with Content-Encoding {encoding}; we take identity")
    return media_type


def _capped_chunks(
    response: requests.Response, max_bytes: int, where: str, deadline: float, total: float
) -> Iterator[bytes]:
    """The raw body in small chunks; refuses as soon as it grows past ``max_bytes``, and
    gives up once ``deadline`` (a ``time.monotonic()`` reading) has passed.

    ``read1`` returns whatever one receive brings, so the deadline is checked between
    receives; ``read`` would block until the whole chunk arrived, however slowly.
    """
    received = 0
    while True:
        if time.monotonic() > deadline:
            raise ResultFetchFailed(
                f"{where} sent {received} bytes in {total:g} s and was cut off: too slow"
            )
        wanted = min(READ_CHUNK, max_bytes + 1 - received)
        try:
            chunk = response.raw.read1(wanted, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ResultFetchFailed(f"reading {where} failed: {type(error).__name__}") from error
        if not chunk:
            return
        received += len(chunk)
        if received > max_bytes:
            raise ResultRefused(f"{where} is larger than the {max_bytes} bytes we take")
        yield chunk


def _read_header(
    chunks: Iterator[bytes], image_format: str, where: str
) -> tuple[list[bytes], int, int]:
    """Reads until the header gives the dimensions; returns the chunks read so far."""
    head: list[bytes] = []
    received = 0
    for chunk in chunks:
        head.append(chunk)
        received += len(chunk)
        if received < _MAGIC_LENGTH:
            continue
        data = b"".join(head)
        if not _has_magic(data, image_format):
            raise ResultRefused(f"{where} is labelled {image_format} but its bytes are not")
        dimensions = _dimensions(data, image_format, where)
        if dimensions:
            return head, *dimensions
        if received >= HEADER_PROBE_LIMIT:
            break
    raise ResultRefused(f"{where}: no readable {image_format} header")


def _has_magic(data: bytes, image_format: str) -> bool:
    if image_format == "JPEG":
        return data.startswith(b"\xff\xd8\xff")
    if image_format == "PNG":
        return data.startswith(b"\x89PNG\r\n\x1a\n")
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _dimensions(data: bytes, image_format: str, where: str) -> tuple[int, int] | None:
    """Width and height once ``data`` holds the whole header; None while it does not yet."""
    if image_format == "WEBP":
        size = _webp_dimensions(data)
    else:
        # Pillow is imported here, by the one step that reads a header: the webhook
        # delivery and the job tasks share this module's network guards, not its decoding.
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data), formats=[image_format]) as image:
                size = image.size
        except Image.DecompressionBombError as error:
            raise ResultRefused(f"{where}: {error}") from error
        except (OSError, ValueError):
            return None
    if size is not None and min(size) < 1:
        raise ResultRefused(f"{where}: the header says the image is {size[0]}x{size[1]}")
    return size


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    """Canvas size from the first chunk of a WebP file (RFC 9649)."""
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        return width, height
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ResultRefused("the WebP file does not start with a VP8, VP8L or VP8X chunk")


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _where(url: str) -> str:
    """The URL without query, fragment or credentials: result URLs often carry signatures."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return "the result URL"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path or '/'}"


# --- transport: connect to the validated addresses only -------------------------------------


SocketWatcher = Callable[[socket.socket], None]


def _pin_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    scheme = scheme.lower()
    return scheme, normalise_host(host), port or DEFAULT_PORTS.get(scheme, 80)


class _PinnedConnectionMixin:
    """Opens the socket to a pinned address instead of resolving the host name again."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def __init__(
        self,
        *args: Any,
        pinned_addresses: tuple[str, ...],
        on_socket: SocketWatcher | None = None,
        **kwargs: Any,
    ) -> None:
        self.pinned_addresses = pinned_addresses
        self.on_socket = on_socket
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        failures = []
        timed_out = False
        for address in self.pinned_addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as error:
                failures.append(f"{address}: {error}")
                timed_out = timed_out or isinstance(error, TimeoutError)
                continue
            peer = sock.getpeername()[0]
            if ipaddress.ip_address(peer) != ipaddress.ip_address(address):
                sock.close()
                raise UnsafeSource(f"connected to {peer} instead of the validated {address}")
            if self.on_socket is not None:
                self.on_socket(sock)
            return sock
        message = f"cannot connect to {self.host}: {'; '.join(failures)}"
        if timed_out:
            raise ConnectTimeoutError(self, message)
        raise NewConnectionError(self, message)  # type: ignore[arg-type]


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def _pool_key_with_addresses(key_fn: Callable[[dict], Any]) -> Callable[[dict], Any]:
    """Pools are shared only by requests pinned to the same addresses."""

    def pool_key(request_context: dict) -> Any:
        context = dict(request_context)
        addresses = context.pop("pinned_addresses")
        watcher = context.pop("on_socket", None)
        return key_fn(context), addresses, watcher

    return pool_key


class _PinnedPoolManager(PoolManager):
    def __init__(
        self,
        pins: dict[tuple[str, str, int], tuple[str, ...]],
        on_socket: SocketWatcher | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._pins = pins
        self._on_socket = on_socket
        self.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }
        keyed_by_addresses: dict[str, Any] = {
            scheme: _pool_key_with_addresses(key_fn)
            for scheme, key_fn in self.key_fn_by_scheme.items()
        }
        self.key_fn_by_scheme = keyed_by_addresses

    def connection_from_host(
        self,
        host: str | None,
        port: int | None = None,
        scheme: str | None = "http",
        pool_kwargs: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        addresses = self._pins.get(_pin_key(scheme or "http", host or "", port))
        if not addresses:
            raise UnsafeSource(f"refusing to connect to {host}: its addresses were not validated")
        pool_kwargs = {**(pool_kwargs or {}), "pinned_addresses": addresses}
        if self._on_socket is not None:
            pool_kwargs["on_socket"] = self._on_socket
        return super().connection_from_host(host, port, scheme, pool_kwargs)


class PinningAdapter(HTTPAdapter):
    """Sends only to addresses pinned by the caller's validation; never through a proxy.

    ``on_socket`` is told of every socket as soon as it is connected (before TLS), so a
    caller can enforce a total deadline by shutting it down from a timer: socket timeouts
    only bound each read, and a peer that trickles bytes would otherwise never time out.
    """

    def __init__(self, on_socket: SocketWatcher | None = None) -> None:
        self._pins: dict[tuple[str, str, int], tuple[str, ...]] = {}
        self._on_socket = on_socket
        super().__init__(max_retries=0)

    def pin(self, scheme: str, host: str, port: int, addresses: tuple[str, ...]) -> None:
        self._pins[_pin_key(scheme, host, port)] = addresses

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _PinnedPoolManager(
            self._pins,
            self._on_socket,
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            **pool_kwargs,
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise UnsafeSource("results are never downloaded through a proxy")
