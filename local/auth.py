"""Local JWT issuer and verifier, standing in for Cognito and API Gateway's JWT authorizer.

The signing key lives in a state directory shared by every local process, so a token minted
by ``make token USER=alice`` is accepted by the front of a stack started by ``make run``.
Verification follows the checks API Gateway documents for HTTP API JWT authorizers: RS256
only, ``kid`` must name a known key, ``iss`` must match, ``aud`` (or ``client_id`` when there
is no ``aud``) must match, and ``exp``/``nbf``/``iat`` must hold against the clock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

LOCAL_ISSUER = "https://local.avatar-pipeline.invalid/issuer"
LOCAL_AUDIENCE = "avatar-pipeline-local"
LOCAL_SCOPE = "aws.cognito.signin.user.admin"
DEFAULT_STATE_DIR = Path(__file__).resolve().parents[1] / ".local" / "jwt"
PRIVATE_KEY_FILE = "signing-key.pem"
ALGORITHM = "RS256"
DEFAULT_LEEWAY_SECONDS = 5

InvalidTokenReason = Literal[
    "missing",
    "malformed",
    "unsupported_alg",
    "unknown_kid",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "missing_claim",
]


class InvalidToken(Exception):
    """A bearer token the JWT authorizer would refuse; ``reason`` says which check failed."""

    def __init__(self, reason: InvalidTokenReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: InvalidTokenReason = reason
        self.detail = detail


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 thumbprint of the key, so the same key always gets the same ``kid``."""
    numbers = public_key.public_numbers()
    members = {"e": _b64_uint(numbers.e), "kty": "RSA", "n": _b64_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    digest = hashes.Hash(hashes.SHA256())
    digest.update(canonical)
    return jwt.utils.base64url_encode(digest.finalize()).decode()


def public_jwk(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    jwk: dict[str, str] = json.loads(RSAAlgorithm.to_jwk(public_key))
    jwk.update({"kid": key_id(public_key), "alg": ALGORITHM, "use": "sig"})
    return jwk


class LocalSigner:
    """Mints RS256 access tokens shaped roughly like Cognito's, with the local issuer.

    The key comes from ``state_dir`` (created there on first use), or is given directly.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        private_key: rsa.RSAPrivateKey | None = None,
        issuer: str = LOCAL_ISSUER,
        audience: str = LOCAL_AUDIENCE,
    ) -> None:
        if private_key is None:
            private_key = load_or_create_private_key(state_dir or DEFAULT_STATE_DIR)
        elif state_dir is not None:
            raise ValueError("pass state_dir or private_key, not both")
        self._private_key = private_key
        self.issuer = issuer
        self.audience = audience
        self.kid = key_id(private_key.public_key())

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._private_key.public_key()

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [public_jwk(self.public_key)]}

    def verifier(self, leeway_seconds: int = DEFAULT_LEEWAY_SECONDS) -> JwtVerifier:
        return JwtVerifier(
            self.issuer, self.audience, jwks=self.jwks(), leeway_seconds=leeway_seconds
        )

    def mint(self, sub: str, ttl_seconds: int = 3600, **extra_claims: Any) -> str:
        """An access token for owner ``sub``; ``extra_claims`` add to or override the defaults."""
        if not sub:
            raise ValueError("sub must not be empty")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "client_id": self.audience,
            "sub": sub,
            "username": sub,
            "token_use": "access",
            "scope": LOCAL_SCOPE,
            "auth_time": now,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": str(uuid.uuid4()),
        }
        claims.update(extra_claims)
        return jwt.encode(claims, self._private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


class JwtVerifier:
    """Validates bearer tokens the way an HTTP API JWT authorizer does."""

    def __init__(
        self,
        issuer: str,
        audience: str | list[str],
        public_key: rsa.RSAPublicKey | None = None,
        *,
        jwks: Mapping[str, Any] | None = None,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        if (public_key is None) == (jwks is None):
            raise ValueError("pass exactly one of public_key or jwks")
        self.issuer = issuer
        self.audiences = frozenset([audience] if isinstance(audience, str) else audience)
        self.leeway_seconds = leeway_seconds
        self._keys: dict[str, Any] = {}
        if public_key is not None:
            self._keys[key_id(public_key)] = public_key
        else:
            assert jwks is not None
            for jwk in jwks.get("keys", []):
                if jwk.get("kty") == "RSA" and jwk.get("kid"):
                    self._keys[jwk["kid"]] = RSAAlgorithm.from_jwk(jwk)

    def verify(self, token: str | None) -> dict[str, Any]:
        """The token's claims; raises ``InvalidToken`` naming the first check that failed."""
        if not token:
            raise InvalidToken("missing", "no token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise InvalidToken("malformed", str(exc)) from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported_alg", f"alg {header.get('alg')!r} is not {ALGORITHM}")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown_kid", f"kid {kid!r} is not a known key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("expired", "the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("not_yet_valid", str(exc)) from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("wrong_issuer", "the token does not have a valid issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken("missing_claim", str(exc)) from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("bad_signature", "the signature does not verify") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed", str(exc)) from exc
        self._check_audience(claims)
        return claims

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        # API Gateway evaluates aud when present and falls back to client_id otherwise.
        presented = claims["aud"] if "aud" in claims else claims.get("client_id")
        candidates = presented if isinstance(presented, list) else [presented]
        if not any(isinstance(c, str) and c in self.audiences for c in candidates):
            raise InvalidToken("wrong_audience", "the token does not have a valid audience")


def load_or_create_private_key(state_dir: Path) -> rsa.RSAPrivateKey:
    """The signing key in ``state_dir``; the first process to need one creates it atomically."""
    key_path = state_dir / PRIVATE_KEY_FILE
    if not key_path.exists():
        _create_private_key(state_dir, key_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{key_path} does not hold an RSA private key")
    return key


def _create_private_key(state_dir: Path, key_path: Path) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    staging = state_dir / f".{PRIVATE_KEY_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
    try:
        # link() refuses to replace: when two processes race, both end up with the winner's key.
        os.link(staging, key_path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            staging.unlink()


def _b64_uint(value: int) -> str:
    return jwt.utils.base64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.auth", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print a bearer token the local stack accepts")
    token.add_argument("--user", required=True, help="the owner, used as the token's sub")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    if args.ttl <= 0:
        parser.error("--ttl must be positive")
    print(LocalSigner(args.state_dir).mint(args.user, ttl_seconds=args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
