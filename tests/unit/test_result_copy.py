"""Copying a provider's result into our bucket: only images, only from places we allow, only
this big, and nothing left behind when we refuse (bench/copy.py measures the memory side).

The provider is played by a loopback HTTP server (and an HTTPS one with a throw-away CA);
S3 is moto in-process. Every test runs under a network guard: a connection to anything but
loopback, or a name lookup outside the copier's resolver, fails the test before a packet
leaves. Refusals also assert that no connection was even attempted.
"""

from __future__ import annotations

import datetime
import io
import ipaddress
import random
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from moto import mock_aws
from PIL import Image

from avatar_core.errors import ResultExpired, ResultFetchFailed, ResultRefused, UnsafeSource
from avatar_core.settings import Settings
from avatar_core.store.result_copy import (
    CopyPolicy,
    ResultCopier,
    unsafe_address_reason,
)

MiB = 1024 * 1024
SMALL_CAP = 256 * 1024
NAMED_HOST = "results.provider.test"
OTHER_NAMED_HOST = "other.provider.test"
SERVER_STREAM_LIMIT = 64 * MiB
"""An "endless" body stops here, so a copier without a cap would finish and fail the test."""


def _image(mode: str, size: tuple[int, int], image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, (200, 120, 40, 255)[: len(mode)]).save(buffer, image_format, **options)
    return buffer.getvalue()


def _encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


JPEG = _image("RGB", (320, 240), "JPEG")
PNG = _image("RGB", (64, 48), "PNG")
WEBP_LOSSY = _image("RGB", (50, 40), "WEBP")
WEBP_LOSSLESS = _image("RGB", (70, 30), "WEBP", lossless=True)
WEBP_EXTENDED = _image("RGBA", (90, 60), "WEBP")
BIG_JPEG = JPEG + bytes(9 * MiB - len(JPEG))
TRICKLE_SECONDS = 0.2
# Picsart's Instant Avatars are 2048x2048; noise is the worst case for the encoders' size.
_NOISE = Image.frombytes("RGB", (2048, 2048), random.Random(7).randbytes(2048 * 2048 * 3))
INSTANT_JPEG = _encoded(_NOISE, "JPEG", quality=95)
INSTANT_PNG = _encoded(_NOISE, "PNG")


# --- the provider ---------------------------------------------------------------------------


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    content_type: str | None = None,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    handler.send_response(status)
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    for name, value in headers:
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _serve(body: bytes, content_type: str | None, *headers: tuple[str, str]) -> Callable:
    return lambda handler: _send(handler, 200, body, content_type, headers)


def _status(status: int) -> Callable:
    return lambda handler: _send(handler, status, b"<html>nope</html>", "text/html")


def _redirect(handler: BaseHTTPRequestHandler, location: str, *headers: tuple[str, str]) -> None:
    _send(handler, 302, b"", None, (("Location", location), *headers))


def _redirect_to_query(handler: BaseHTTPRequestHandler) -> None:
    _redirect(handler, parse_qs(urlsplit(handler.path).query)["to"][0])


def _endless_chunked(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    padding = bytes(64 * 1024)
    sent = 0
    for block in _blocks(JPEG, padding):
        handler.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
        sent += len(block)
        if sent >= SERVER_STREAM_LIMIT:
            break
    handler.wfile.write(b"0\r\n\r\n")


def _endless_unsized(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.close_connection = True
    sent = 0
    for block in _blocks(JPEG, bytes(64 * 1024)):
        handler.wfile.write(block)
        sent += len(block)
        if sent >= SERVER_STREAM_LIMIT:
            break


def _blocks(first: bytes, repeated: bytes) -> Iterator[bytes]:
    yield first
    while True:
        yield repeated


def _declares_too_much(handler: BaseHTTPRequestHandler) -> None:
    """Honest about its size and slow to send it: a copier that read the body would time out
    (ResultFetchFailed) instead of refusing at once."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(SMALL_CAP + 1))
    handler.end_headers()
    handler.wfile.flush()
    time.sleep(3)
    handler.wfile.write(JPEG + bytes(SMALL_CAP + 1 - len(JPEG)))


def _slow_headers(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(1.5)
    _send(handler, 200, JPEG, "image/jpeg")


def _stalling_body(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(JPEG)))
    handler.end_headers()
    handler.wfile.write(JPEG[:100])
    handler.wfile.flush()
    time.sleep(1.5)
    handler.wfile.write(JPEG[100:])


def _trickling_body(handler: BaseHTTPRequestHandler) -> None:
    """One byte at a time, each just inside the read timeout: every read succeeds."""
    handler.send_response(200)
    handler.send_header("Content-Type", "image/jpeg")
    handler.send_header("Content-Length", str(len(JPEG)))
    handler.end_headers()
    for byte in JPEG:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(TRICKLE_SECONDS)


def _redirect_chain(handler: BaseHTTPRequestHandler) -> None:
    remaining = int(handler.path.rsplit("/", 1)[1])
    _redirect(handler, f"/redirect/chain/{remaining - 1}" if remaining > 1 else "/avatar.jpg")


def _redirect_to_named_host(handler: BaseHTTPRequestHandler) -> None:
    port = handler.server.server_address[1]
    _send(handler, 301, b"", None, (("Location", f"http://{NAMED_HOST}:{port}/avatar.png"),))


ROUTES: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {
    "/avatar.jpg": _serve(JPEG, "image/jpeg"),
    "/avatar.png": _serve(PNG, "image/png"),
    "/avatar-vp8.webp": _serve(WEBP_LOSSY, "image/webp"),
    "/avatar-vp8l.webp": _serve(WEBP_LOSSLESS, "image/webp"),
    "/avatar-vp8x.webp": _serve(WEBP_EXTENDED, "image/webp"),
    "/big-avatar.jpg": _serve(BIG_JPEG, "image/jpeg"),
    "/text-labelled-jpeg": _serve(b"<html>not an image at all</html>", "image/jpeg"),
    "/png-labelled-jpeg": _serve(PNG, "image/jpeg"),
    "/text-labelled-webp": _serve(b"RIFF\x00\x00\x00\x00WEBX" + bytes(40), "image/webp"),
    "/jpeg-labelled-html": _serve(JPEG, "text/html"),
    "/jpeg-untyped": _serve(JPEG, None),
    "/jpeg-gzip-encoded": _serve(JPEG, "image/jpeg", ("Content-Encoding", "gzip")),
    "/status/400": _status(400),
    "/status/403": _status(403),
    "/status/404": _status(404),
    "/status/410": _status(410),
    "/status/429": _status(429),
    "/status/500": _status(500),
    "/status/503": _status(503),
    "/declares-too-much.jpg": _declares_too_much,
    "/endless-chunked.jpg": _endless_chunked,
    "/endless-unsized.jpg": _endless_unsized,
    "/slow-headers.jpg": _slow_headers,
    "/stalling-body.jpg": _stalling_body,
    "/trickling-body.jpg": _trickling_body,
    "/instant-avatar-2048.jpg": _serve(INSTANT_JPEG, "image/jpeg"),
    "/instant-avatar-2048.png": _serve(INSTANT_PNG, "image/png"),
    "/redirect/relative": lambda handler: _redirect(handler, "/avatar.jpg"),
    "/redirect/named-host": _redirect_to_named_host,
    "/redirect/loop": lambda handler: _redirect(handler, "/redirect/loop"),
    "/redirect/with-cookie": lambda handler: _redirect(
        handler, "/avatar.jpg", ("Set-Cookie", "session=provider-secret; Path=/")
    ),
    "/redirect/to": _redirect_to_query,
}


class _ProviderHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers)))  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        route = ROUTES.get(path) or (
            _redirect_chain if path.startswith("/redirect/chain/") else None
        )
        try:
            (route or _status(404))(self)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ProviderServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A copier hanging up on a body it refused is the expected outcome, not an error."""


@dataclass
class Provider:
    server: ThreadingHTTPServer
    scheme: str

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def seen(self) -> list[tuple[str, dict[str, str]]]:
        return self.server.seen  # type: ignore[attr-defined]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _start_provider(ssl_context: ssl.SSLContext | None = None) -> Provider:
    server = _ProviderServer(("127.0.0.1", 0), _ProviderHandler)
    server.seen = []  # type: ignore[attr-defined]
    if ssl_context is not None:
        server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return Provider(server, "https" if ssl_context else "http")


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    started = _start_provider()
    yield started
    started.server.shutdown()
    started.server.server_close()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A throw-away CA and a certificate for NAMED_HOST signed by it."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "result-copy test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAMED_HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAMED_HOST)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture(scope="module")
def tls_provider(tls_files: TlsFiles) -> Iterator[Provider]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files.certificate, tls_files.key)
    started = _start_provider(context)
    yield started
    started.server.shutdown()
    started.server.server_close()


# --- the network guard, the resolver and the bucket -----------------------------------------


class ForbiddenNetworkAccess(BaseException):
    """Raised instead of connecting or resolving; a BaseException so nothing swallows it."""


@dataclass
class Network:
    connections: list[str] = field(default_factory=list)


@pytest.fixture(autouse=True)
def network(monkeypatch: pytest.MonkeyPatch) -> Network:
    """Only loopback connections, and no name lookups except through the copier's resolver."""
    observed = Network()
    test_thread = threading.get_ident()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        if threading.get_ident() == test_thread:  # not a stack left running by another test
            observed.connections.append(host)
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ForbiddenNetworkAccess(f"connection to {address!r}")
        real_connect(sock, address)

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            raise ForbiddenNetworkAccess(f"name lookup of {host!r}") from None
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return observed


class StubResolver:
    """Answers from a table (each name may change its answer per lookup); records lookups."""

    def __init__(self, answers: dict[str, list[list[str]]] | None = None) -> None:
        self._answers = answers or {}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        answers = self._answers.get(host)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown")
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture
def resolver() -> StubResolver:
    return StubResolver({NAMED_HOST: [["127.0.0.1"]]})


@dataclass
class Bucket:
    s3: object
    name: str
    calls: list[str]

    def body(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()  # type: ignore[attr-defined]

    def assert_untouched(self) -> None:
        objects = self.s3.list_objects_v2(Bucket=self.name)  # type: ignore[attr-defined]
        uploads = self.s3.list_multipart_uploads(Bucket=self.name)  # type: ignore[attr-defined]
        assert objects["KeyCount"] == 0
        assert uploads.get("Uploads", []) == []


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    with pytest.MonkeyPatch.context() as env:
        env.delenv("AWS_ENDPOINT_URL", raising=False)  # a local stack may be up in this process
        with mock_aws():
            yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def bucket(s3: object) -> Iterator[Bucket]:
    name = f"results-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    calls: list[str] = []

    def record(model: object, params: dict, **_: object) -> None:
        if params.get("Bucket") == name:
            calls.append(model.name)  # type: ignore[attr-defined]

    s3.meta.events.register("before-parameter-build.s3.*", record)  # type: ignore[attr-defined]
    yield Bucket(s3, name, calls)
    s3.meta.events.unregister("before-parameter-build.s3.*", record)  # type: ignore[attr-defined]


LOCAL = CopyPolicy(
    allowed_hosts=("127.0.0.1", NAMED_HOST),
    allow_loopback=True,
    allow_http=True,
    max_bytes=SMALL_CAP,
    connect_timeout=1.0,
    read_timeout=1.0,
)
"""Like local configuration: the provider emulator is plain http on loopback."""


@pytest.fixture
def copier(bucket: Bucket, resolver: StubResolver) -> Callable[..., ResultCopier]:
    def build(policy: CopyPolicy = LOCAL, **kwargs: object) -> ResultCopier:
        kwargs.setdefault("resolve", resolver)
        return ResultCopier(bucket.s3, bucket.name, policy, **kwargs)  # type: ignore[arg-type]

    return build


def _key() -> str:
    return f"avatars/{uuid.uuid4().hex}.img"


def _policy(**changes: object) -> CopyPolicy:
    values = {name: getattr(LOCAL, name) for name in LOCAL.__dataclass_fields__}
    return CopyPolicy(**{**values, **changes})  # type: ignore[arg-type]


# --- copies that succeed --------------------------------------------------------------------


def test_a_jpeg_result_is_copied_with_its_type_size_dimensions_and_encryption(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    key = _key()

    copied = copier().copy(provider.url("/avatar.jpg"), key)

    assert (copied.key, copied.content_type, copied.size) == (key, "image/jpeg", len(JPEG))
    assert (copied.width, copied.height) == (320, 240)
    stored = bucket.s3.head_object(Bucket=bucket.name, Key=key)  # type: ignore[attr-defined]
    assert stored["ContentType"] == "image/jpeg"
    assert stored["ServerSideEncryption"] == "AES256"
    assert bucket.body(key) == JPEG


@pytest.mark.parametrize(
    ("path", "content_type", "body", "dimensions"),
    [
        ("/avatar.png", "image/png", PNG, (64, 48)),
        ("/avatar-vp8.webp", "image/webp", WEBP_LOSSY, (50, 40)),
        ("/avatar-vp8l.webp", "image/webp", WEBP_LOSSLESS, (70, 30)),
        ("/avatar-vp8x.webp", "image/webp", WEBP_EXTENDED, (90, 60)),
    ],
    ids=["png", "webp-vp8", "webp-vp8l", "webp-vp8x"],
)
def test_png_and_webp_results_are_copied_with_the_dimensions_in_their_header(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    path: str,
    content_type: str,
    body: bytes,
    dimensions: tuple[int, int],
) -> None:
    key = _key()

    copied = copier().copy(provider.url(path), key)

    assert (copied.content_type, copied.size) == (content_type, len(body))
    assert (copied.width, copied.height) == dimensions == Image.open(io.BytesIO(body)).size
    assert bucket.body(key) == body


def test_a_result_larger_than_one_part_is_uploaded_in_parts_and_arrives_whole(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    key = _key()

    copied = copier(_policy(max_bytes=16 * MiB)).copy(provider.url("/big-avatar.jpg"), key)

    assert (copied.size, copied.width, copied.height) == (len(BIG_JPEG), 320, 240)
    stored = bucket.s3.head_object(Bucket=bucket.name, Key=key)  # type: ignore[attr-defined]
    assert stored["ETag"].strip('"').endswith("-2")
    assert stored["ServerSideEncryption"] == "AES256"
    assert bucket.body(key) == BIG_JPEG


def test_a_redirect_to_another_allowed_path_is_followed(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    key = _key()

    copied = copier().copy(provider.url("/redirect/relative"), key)

    assert copied.content_type == "image/jpeg"
    assert bucket.body(key) == JPEG


def test_a_redirect_to_another_allowed_host_is_resolved_and_followed(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    resolver: StubResolver,
    network: Network,
) -> None:
    key = _key()

    copied = copier().copy(provider.url("/redirect/named-host"), key)

    assert copied.content_type == "image/png"
    assert bucket.body(key) == PNG
    assert resolver.lookups == [NAMED_HOST]
    assert network.connections == ["127.0.0.1", "127.0.0.1"]


def test_as_many_redirects_as_allowed_are_followed(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    key = _key()

    copier(_policy(max_redirects=3)).copy(provider.url("/redirect/chain/3"), key)

    assert bucket.body(key) == JPEG


def test_no_cookies_credentials_or_environment_settings_reach_the_provider(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    network: Network,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://10.9.9.9:3128")
    session = requests.Session()
    session.cookies.set("session", "ours", domain="127.0.0.1")
    session.headers["Authorization"] = "Bearer ours"
    session.auth = ("user", "secret")
    provider.seen.clear()

    copier(session=session).copy(provider.url("/redirect/with-cookie"), _key())

    assert [path for path, _ in provider.seen] == ["/redirect/with-cookie", "/avatar.jpg"]
    for _, headers in provider.seen:
        assert not {"Cookie", "Authorization", "Proxy-Authorization"} & set(headers)
    assert network.connections == ["127.0.0.1", "127.0.0.1"]


def test_the_connection_goes_to_the_validated_address_without_a_second_lookup(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, network: Network
) -> None:
    rebinding = StubResolver({NAMED_HOST: [["127.0.0.1"], ["169.254.169.254"]]})
    key = _key()

    copier(resolve=rebinding).copy(provider.url("/avatar.jpg", host=NAMED_HOST), key)

    assert rebinding.lookups == [NAMED_HOST]
    assert network.connections == ["127.0.0.1"]
    assert bucket.body(key) == JPEG


# --- the provider has lost it, or is having a bad moment ------------------------------------


@pytest.mark.parametrize("status", [403, 404, 410])
def test_a_result_the_provider_no_longer_serves_has_expired(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, status: int
) -> None:
    with pytest.raises(ResultExpired, match="expired before it could be copied"):
        copier().copy(provider.url(f"/status/{status}"), _key())

    bucket.assert_untouched()


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_throttling_fail_retryably(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, status: int
) -> None:
    with pytest.raises(ResultFetchFailed):
        copier().copy(provider.url(f"/status/{status}"), _key())

    bucket.assert_untouched()


def test_another_client_error_is_refused_rather_than_retried(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    with pytest.raises(ResultRefused):
        copier().copy(provider.url("/status/400"), _key())

    bucket.assert_untouched()


@pytest.mark.parametrize("path", ["/slow-headers.jpg", "/stalling-body.jpg"])
def test_a_provider_slower_than_the_read_timeout_fails_retryably(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, path: str
) -> None:
    with pytest.raises(ResultFetchFailed):
        copier(_policy(read_timeout=0.3)).copy(provider.url(path), _key())

    bucket.assert_untouched()


def test_a_body_that_trickles_inside_every_read_timeout_is_cut_by_the_total_deadline(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    # one byte every 0.2 s never trips the 1 s read timeout; the 1 s total deadline does
    started = time.monotonic()
    with pytest.raises(ResultFetchFailed, match="too slow"):
        copier(_policy(read_timeout=1.0, total_timeout=1.0)).copy(
            provider.url("/trickling-body.jpg"), _key()
        )

    assert time.monotonic() - started < 1.0 + 1.0 + 0.5  # deadline + at most one read
    bucket.assert_untouched()


@pytest.mark.parametrize("path", ["/instant-avatar-2048.jpg", "/instant-avatar-2048.png"])
def test_an_instant_avatar_of_2048_pixels_fits_the_default_caps(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, path: str
) -> None:
    defaults = CopyPolicy(allowed_hosts=())
    policy = _policy(max_bytes=defaults.max_bytes, total_timeout=defaults.total_timeout)

    copied = copier(policy).copy(provider.url(path), _key())

    assert (copied.width, copied.height) == (2048, 2048)
    assert copied.size < defaults.max_bytes
    assert Image.MAX_IMAGE_PIXELS > 2048 * 2048


def test_a_provider_that_is_not_listening_fails_retryably(
    copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]

    with pytest.raises(ResultFetchFailed):
        copier().copy(f"http://127.0.0.1:{closed_port}/avatar.jpg", _key())

    bucket.assert_untouched()


# --- results we do not take -------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/text-labelled-jpeg",
        "/png-labelled-jpeg",
        "/text-labelled-webp",
        "/jpeg-labelled-html",
        "/jpeg-untyped",
        "/jpeg-gzip-encoded",
    ],
)
def test_a_result_whose_type_or_bytes_are_not_an_accepted_image_is_refused(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, path: str
) -> None:
    with pytest.raises(ResultRefused):
        copier().copy(provider.url(path), _key())

    bucket.assert_untouched()


def test_a_declared_length_over_the_cap_is_refused_before_reading_the_body(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    with pytest.raises(ResultRefused, match="declares"):
        copier().copy(provider.url("/declares-too-much.jpg"), _key())

    bucket.assert_untouched()


@pytest.mark.parametrize("path", ["/endless-chunked.jpg", "/endless-unsized.jpg"])
def test_a_body_without_a_length_is_cut_off_just_past_the_cap(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, path: str
) -> None:
    with pytest.raises(ResultRefused, match="larger than"):
        copier().copy(provider.url(path), _key())

    bucket.assert_untouched()


def test_a_body_cut_off_after_parts_were_uploaded_leaves_no_upload_behind(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    with pytest.raises(ResultRefused, match="larger than"):
        copier(_policy(max_bytes=10 * MiB)).copy(provider.url("/endless-chunked.jpg"), _key())

    assert {"CreateMultipartUpload", "UploadPart", "AbortMultipartUpload"} <= set(bucket.calls)
    assert "CompleteMultipartUpload" not in bucket.calls
    bucket.assert_untouched()


# --- places we never download from ------------------------------------------------------------


def test_a_host_not_on_the_allow_list_is_refused_before_connecting(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    network: Network,
    resolver: StubResolver,
) -> None:
    with pytest.raises(UnsafeSource, match="allow-list"):
        copier().copy(provider.url("/avatar.jpg", host="localhost"), _key())

    assert network.connections == []
    assert resolver.lookups == []
    bucket.assert_untouched()


def test_plain_http_is_refused_unless_configuration_allows_it(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, network: Network
) -> None:
    with pytest.raises(UnsafeSource, match="https only"):
        copier(_policy(allow_http=False)).copy(provider.url("/avatar.jpg"), _key())

    assert network.connections == []
    bucket.assert_untouched()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", NAMED_HOST, "127.0.0.1."]
)
def test_loopback_is_refused_without_local_configuration_even_when_listed(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    network: Network,
    host: str,
) -> None:
    policy = _policy(
        allow_loopback=False, allowed_hosts=("127.0.0.1", "::1", "::ffff:127.0.0.1", NAMED_HOST)
    )

    with pytest.raises(UnsafeSource, match="loopback"):
        copier(policy).copy(provider.url("/avatar.jpg", host=host), _key())

    assert network.connections == []
    bucket.assert_untouched()


UNSAFE_ADDRESSES = [
    "10.0.0.7",
    "172.16.4.2",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.170.2",
    "169.254.10.10",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104 - an address we must refuse, not one we bind
    "224.0.0.251",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "fec0::1",
    "ff02::1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "2002:a9fe:a9fe::1",
    "64:ff9b::a9fe:a9fe",
]


@pytest.mark.parametrize("address", UNSAFE_ADDRESSES)
def test_a_literal_unsafe_address_is_refused_even_when_listed(
    copier: Callable[..., ResultCopier], bucket: Bucket, network: Network, address: str
) -> None:
    host = f"[{address}]" if ":" in address else address
    policy = _policy(allowed_hosts=(address,))

    with pytest.raises(UnsafeSource, match=address):
        copier(policy).copy(f"http://{host}/latest/meta-data/", _key())

    assert network.connections == []
    bucket.assert_untouched()


@pytest.mark.parametrize(
    "answer",
    [[address] for address in UNSAFE_ADDRESSES] + [["127.0.0.1", "10.0.0.7"]],
    ids=[*UNSAFE_ADDRESSES, "loopback-and-private"],
)
def test_an_allowed_name_resolving_to_any_unsafe_address_is_refused(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    network: Network,
    answer: list[str],
) -> None:
    resolver = StubResolver({NAMED_HOST: [answer]})

    with pytest.raises(UnsafeSource, match=NAMED_HOST):
        copier(resolve=resolver).copy(provider.url("/avatar.jpg", host=NAMED_HOST), _key())

    assert network.connections == []
    bucket.assert_untouched()


def test_a_redirect_to_the_metadata_service_is_refused_without_connecting_to_it(
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    network: Network,
    resolver: StubResolver,
) -> None:
    metadata = "http://169.254.169.254/latest/meta-data/"

    with pytest.raises(UnsafeSource, match="allow-list"):
        copier().copy(provider.url(f"/redirect/to?to={metadata}"), _key())

    assert network.connections == ["127.0.0.1"]
    assert resolver.lookups == []
    bucket.assert_untouched()


def test_a_redirect_to_the_metadata_service_is_refused_even_if_it_is_listed_by_mistake(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, network: Network
) -> None:
    policy = _policy(allowed_hosts=("127.0.0.1", "169.254.169.254"))
    metadata = "http://169.254.169.254/latest/meta-data/"

    with pytest.raises(UnsafeSource, match="metadata"):
        copier(policy).copy(provider.url(f"/redirect/to?to={metadata}"), _key())

    assert network.connections == ["127.0.0.1"]
    bucket.assert_untouched()


def test_a_name_that_rebinds_to_a_private_address_between_hops_is_refused(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, network: Network
) -> None:
    rebinding = StubResolver({NAMED_HOST: [["127.0.0.1"], ["10.0.0.7"]]})
    second_hop = provider.url("/avatar.jpg", host=NAMED_HOST)

    with pytest.raises(UnsafeSource, match=re.escape("10.0.0.7")):
        copier(resolve=rebinding).copy(
            provider.url(f"/redirect/to?to={second_hop}", host=NAMED_HOST), _key()
        )

    assert rebinding.lookups == [NAMED_HOST, NAMED_HOST]
    assert network.connections == ["127.0.0.1"]
    bucket.assert_untouched()


def test_a_redirect_loop_is_refused_after_max_redirects(
    provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket
) -> None:
    provider.seen.clear()

    with pytest.raises(ResultRefused, match="redirects"):
        copier(_policy(max_redirects=3)).copy(provider.url("/redirect/loop"), _key())

    assert [path for path, _ in provider.seen] == ["/redirect/loop"] * 4
    bucket.assert_untouched()


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@127.0.0.1:9/avatar.jpg",
        "ftp://127.0.0.1/avatar.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_",
        "//127.0.0.1/avatar.jpg",
        "http:///avatar.jpg",
        "not a url",
    ],
)
def test_urls_with_credentials_other_schemes_or_no_host_are_refused(
    copier: Callable[..., ResultCopier], bucket: Bucket, network: Network, url: str
) -> None:
    with pytest.raises(UnsafeSource):
        copier().copy(url, _key())

    assert network.connections == []
    bucket.assert_untouched()


def test_the_copier_transport_never_connects_to_a_host_it_did_not_validate(
    provider: Provider, copier: Callable[..., ResultCopier], network: Network
) -> None:
    session = requests.Session()
    copier(session=session)

    with pytest.raises(UnsafeSource, match="not validated"):
        session.get(provider.url("/avatar.jpg"), timeout=1)

    assert network.connections == []


# --- https: pinned address, verified name ------------------------------------------------------


def _tls_copier(
    copier: Callable[..., ResultCopier], tls_files: TlsFiles, **changes: object
) -> ResultCopier:
    session = requests.Session()
    session.verify = str(tls_files.ca)
    resolver = StubResolver({NAMED_HOST: [["127.0.0.1"]], OTHER_NAMED_HOST: [["127.0.0.1"]]})
    policy = _policy(allow_http=False, allowed_hosts=(NAMED_HOST, OTHER_NAMED_HOST), **changes)
    return copier(policy, session=session, resolve=resolver)


def test_https_connects_to_the_pinned_address_and_still_verifies_the_host_name(
    tls_provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    tls_files: TlsFiles,
    network: Network,
) -> None:
    key = _key()

    copied = _tls_copier(copier, tls_files).copy(
        tls_provider.url("/avatar.jpg", host=NAMED_HOST), key
    )

    assert copied.size == len(JPEG)
    assert bucket.body(key) == JPEG
    assert network.connections == ["127.0.0.1"]


def test_https_refuses_a_certificate_for_another_name_at_the_same_address(
    tls_provider: Provider, copier: Callable[..., ResultCopier], bucket: Bucket, tls_files: TlsFiles
) -> None:
    with pytest.raises(ResultFetchFailed, match="SSLError"):
        _tls_copier(copier, tls_files).copy(
            tls_provider.url("/avatar.jpg", host=OTHER_NAMED_HOST), _key()
        )

    bucket.assert_untouched()


def test_an_https_result_redirecting_to_plain_http_is_refused(
    tls_provider: Provider,
    provider: Provider,
    copier: Callable[..., ResultCopier],
    bucket: Bucket,
    tls_files: TlsFiles,
    network: Network,
) -> None:
    downgrade = provider.url("/avatar.jpg", host=NAMED_HOST)

    with pytest.raises(UnsafeSource, match="https only"):
        _tls_copier(copier, tls_files).copy(
            tls_provider.url(f"/redirect/to?to={downgrade}", host=NAMED_HOST), _key()
        )

    assert network.connections == ["127.0.0.1"]
    bucket.assert_untouched()


# --- the rules themselves ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"]
)
def test_public_addresses_are_acceptable(address: str) -> None:
    assert unsafe_address_reason(address, allow_loopback=False) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_addresses_are_acceptable_only_in_local_configuration(address: str) -> None:
    assert unsafe_address_reason(address, allow_loopback=True) is None
    assert unsafe_address_reason(address, allow_loopback=False) is not None


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("cdn.provider.example", True),
        ("CDN.Provider.Example.", True),
        ("a.b.provider.example", True),
        ("provider.example", False),
        ("evilprovider.example", False),
        ("provider.example.evil.test", False),
        ("results.example", True),
        ("x.results.example", False),
    ],
)
def test_allowed_hosts_are_exact_names_or_explicit_suffix_patterns(
    host: str, allowed: bool
) -> None:
    policy = CopyPolicy(
        allowed_hosts=("results.example",), allowed_patterns=("*.Provider.Example",)
    )

    assert policy.allows_host(host) is allowed


@pytest.mark.parametrize("pattern", ["*", "*.", "a.*.example", "*example.com", "", "*.com"])
def test_an_allowed_host_pattern_we_cannot_read_is_a_configuration_error(pattern: str) -> None:
    with pytest.raises(ValueError, match="allowed host pattern"):
        CopyPolicy(allowed_hosts=(), allowed_patterns=(pattern,))


@pytest.mark.parametrize("host", ["*.amazonaws.com", "*.cloudfront.net", "cdn.*.example", ""])
def test_the_exact_host_list_refuses_wildcards_so_broad_trust_is_never_a_default(
    host: str,
) -> None:
    with pytest.raises(ValueError, match="exact host names only"):
        CopyPolicy(allowed_hosts=(host,))


def test_the_default_configuration_trusts_no_wildcard_host() -> None:
    policy = CopyPolicy.from_settings(Settings())

    assert policy.allowed_patterns == ()
    assert not policy.allows_host("attacker-bucket.s3.amazonaws.com")
    assert not policy.allows_host("d111111abcdef8.cloudfront.net")


def test_the_policy_is_read_from_settings() -> None:
    settings = Settings.from_env(
        {
            "RESULT_ALLOWED_HOSTS": "cdn.provider.example",
            "RESULT_ALLOWED_HOST_PATTERNS": "*.results.example",
            "RESULT_MAX_BYTES": "1000",
            "RESULT_CONNECT_TIMEOUT_SECONDS": "2",
            "RESULT_READ_TIMEOUT_SECONDS": "7",
            "RESULT_TOTAL_TIMEOUT_SECONDS": "40",
        }
    )

    policy = CopyPolicy.from_settings(settings)

    assert policy == CopyPolicy(
        allowed_hosts=("cdn.provider.example",),
        allowed_patterns=("*.results.example",),
        max_bytes=1000,
        connect_timeout=2.0,
        read_timeout=7.0,
        total_timeout=40.0,
    )
    assert (policy.allow_http, policy.allow_loopback) == (False, False)
