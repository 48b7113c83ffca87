"""The local issuer mints tokens that the local JWT authorizer accepts, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import local.auth
from local.auth import (
    LOCAL_AUDIENCE,
    LOCAL_ISSUER,
    InvalidToken,
    JwtVerifier,
    LocalSigner,
    main,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def signer(tmp_path: Path) -> LocalSigner:
    return LocalSigner(tmp_path / "jwt")


@pytest.fixture
def verifier(signer: LocalSigner) -> JwtVerifier:
    return signer.verifier()


@pytest.fixture(scope="module")
def own_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def own_signer(own_key: rsa.RSAPrivateKey) -> LocalSigner:
    return LocalSigner(private_key=own_key)


def _claims_of(token: str) -> dict[str, object]:
    claims: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return claims


def _signed(key: rsa.RSAPrivateKey, kid: str, claims: dict[str, object]) -> str:
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def _unsigned(header: dict[str, object], claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def _reason(verifier: JwtVerifier, token: str | None) -> str:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token)
    return caught.value.reason


def test_given_no_state_dir_when_first_used_then_the_private_key_is_owner_only(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "nested" / "jwt"

    LocalSigner(state_dir)

    key_file = next(state_dir.glob("*.pem"))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert [p.name for p in state_dir.iterdir()] == [key_file.name]


def test_without_a_state_dir_the_repos_local_dir_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local.auth, "DEFAULT_STATE_DIR", tmp_path / "default")

    signer = LocalSigner()

    assert LocalSigner(tmp_path / "default").kid == signer.kid


def test_signer_takes_a_state_dir_or_a_key_not_both(
    tmp_path: Path, own_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(ValueError):
        LocalSigner(tmp_path, private_key=own_key)


def test_given_a_state_dir_when_another_process_mints_then_the_stack_accepts_it(
    tmp_path: Path,
) -> None:
    stack = LocalSigner(tmp_path)
    token_process = LocalSigner(tmp_path)

    claims = stack.verifier().verify(token_process.mint("alice"))

    assert claims["sub"] == "alice"
    assert stack.kid == token_process.kid


def test_given_racing_first_uses_when_they_create_the_key_then_all_share_one(
    tmp_path: Path,
) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        signers = list(pool.map(lambda _: LocalSigner(tmp_path), range(4)))

    assert len({s.kid for s in signers}) == 1
    assert len(list(tmp_path.iterdir())) == 1


def test_minted_token_looks_like_a_cognito_access_token(
    signer: LocalSigner, verifier: JwtVerifier
) -> None:
    token = signer.mint("alice", ttl_seconds=600, email="alice@example.invalid")

    header = jwt.get_unverified_header(token)
    claims = verifier.verify(token)

    assert header["alg"] == "RS256"
    assert header["kid"] == signer.kid
    assert claims["iss"] == LOCAL_ISSUER
    assert claims["aud"] == LOCAL_AUDIENCE
    assert claims["client_id"] == LOCAL_AUDIENCE
    assert claims["sub"] == "alice"
    assert claims["token_use"] == "access"
    assert claims["scope"]
    assert claims["exp"] - claims["iat"] == 600
    assert abs(claims["iat"] - time.time()) < 5
    assert claims["email"] == "alice@example.invalid"


@pytest.mark.parametrize("ttl", [0, -10])
def test_mint_refuses_a_lifetime_that_is_not_positive(signer: LocalSigner, ttl: int) -> None:
    with pytest.raises(ValueError, match="ttl"):
        signer.mint("alice", ttl_seconds=ttl)


def test_verifier_built_from_the_public_key_accepts_the_signers_tokens(
    signer: LocalSigner,
) -> None:
    verifier = JwtVerifier(LOCAL_ISSUER, LOCAL_AUDIENCE, signer.public_key)

    assert verifier.verify(signer.mint("bob"))["sub"] == "bob"


def test_verifier_needs_exactly_one_key_source(signer: LocalSigner) -> None:
    with pytest.raises(ValueError):
        JwtVerifier(LOCAL_ISSUER, LOCAL_AUDIENCE)
    with pytest.raises(ValueError):
        JwtVerifier(LOCAL_ISSUER, LOCAL_AUDIENCE, public_key=signer.public_key, jwks=signer.jwks())


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token_is_refused(verifier: JwtVerifier, token: str | None) -> None:
    assert _reason(verifier, token) == "missing"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "malformed"),
        ("a.b.c", "malformed"),
        ("Bearer x.y.z", "malformed"),
        ("e30.e30.", "unsupported_alg"),
    ],
)
def test_malformed_token_is_refused(verifier: JwtVerifier, token: str, reason: str) -> None:
    assert _reason(verifier, token) == reason


def test_token_signed_by_another_key_with_our_kid_is_refused(
    signer: LocalSigner, verifier: JwtVerifier, own_key: rsa.RSAPrivateKey
) -> None:
    now = int(time.time())
    claims = {"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": "mallory", "exp": now + 60}
    forged = _signed(own_key, signer.kid, claims)

    assert _reason(verifier, forged) == "bad_signature"


def test_token_from_another_issuer_key_is_refused(tmp_path: Path, verifier: JwtVerifier) -> None:
    stranger = LocalSigner(tmp_path / "stranger")

    assert _reason(verifier, stranger.mint("mallory")) == "unknown_kid"


def test_tampered_claims_are_refused(signer: LocalSigner, verifier: JwtVerifier) -> None:
    header, _, signature = signer.mint("alice").split(".")
    claims = {"iss": LOCAL_ISSUER, "aud": LOCAL_AUDIENCE, "sub": "admin", "exp": 2**31}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    assert _reason(verifier, f"{header}.{payload}.{signature}") == "bad_signature"


def test_wrong_issuer_is_refused(signer: LocalSigner, verifier: JwtVerifier) -> None:
    token = signer.mint("alice", iss="https://cognito-idp.us-east-1.amazonaws.com/other")

    assert _reason(verifier, token) == "wrong_issuer"


def test_wrong_audience_is_refused_even_when_client_id_matches(
    signer: LocalSigner, verifier: JwtVerifier
) -> None:
    token = signer.mint("alice", aud="someone-else")

    assert _reason(verifier, token) == "wrong_audience"


def test_client_id_is_checked_when_there_is_no_aud(
    own_key: rsa.RSAPrivateKey, own_signer: LocalSigner
) -> None:
    verifier = own_signer.verifier()
    accepted = _claims_of(own_signer.mint("alice"))
    accepted.pop("aud")
    refused = {**accepted, "client_id": "someone-else"}

    assert verifier.verify(_signed(own_key, own_signer.kid, accepted))["sub"] == "alice"
    assert _reason(verifier, _signed(own_key, own_signer.kid, refused)) == "wrong_audience"


def test_audience_list_matches_when_one_entry_does(signer: LocalSigner) -> None:
    token = signer.mint("alice", aud=["other", LOCAL_AUDIENCE])

    assert signer.verifier().verify(token)["sub"] == "alice"


def test_expired_token_is_refused(signer: LocalSigner, verifier: JwtVerifier) -> None:
    now = int(time.time())
    token = signer.mint("alice", iat=now - 3600, exp=now - 60)

    assert _reason(verifier, token) == "expired"


def test_token_expired_within_the_small_leeway_is_accepted(signer: LocalSigner) -> None:
    now = int(time.time())
    token = signer.mint("alice", iat=now - 3600, exp=now - 2)

    assert signer.verifier(leeway_seconds=5).verify(token)["sub"] == "alice"


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_token_not_yet_valid_is_refused(
    signer: LocalSigner, verifier: JwtVerifier, claim: str
) -> None:
    token = signer.mint("alice", **{claim: int(time.time()) + 600})

    assert _reason(verifier, token) == "not_yet_valid"


def test_token_without_exp_is_refused(own_key: rsa.RSAPrivateKey, own_signer: LocalSigner) -> None:
    claims = _claims_of(own_signer.mint("alice"))
    claims.pop("exp")

    token = _signed(own_key, own_signer.kid, claims)

    assert _reason(own_signer.verifier(), token) == "missing_claim"


def test_alg_none_is_refused(signer: LocalSigner, verifier: JwtVerifier) -> None:
    claims = _claims_of(signer.mint("alice"))
    token = _unsigned({"alg": "none", "typ": "JWT", "kid": signer.kid}, claims)

    assert _reason(verifier, token) == "unsupported_alg"


def test_hs256_signed_with_the_public_key_is_refused(
    signer: LocalSigner, verifier: JwtVerifier
) -> None:
    claims = _claims_of(signer.mint("alice"))
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    payload = _unsigned(header, claims)[:-1].encode()
    secret = signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    token = payload.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    assert _reason(verifier, token) == "unsupported_alg"


def test_cli_prints_only_a_token_the_stack_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "--user", "carol", "--ttl", "120", "--state-dir", str(tmp_path)]) == 0

    token = capsys.readouterr().out
    claims = LocalSigner(tmp_path).verifier().verify(token.strip())

    assert token.count("\n") == 1
    assert claims["sub"] == "carol"
    assert claims["exp"] - claims["iat"] == 120


def test_cli_runs_as_a_module_in_its_own_process(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - fixed argv of our own module
        [sys.executable, "-m", "local.auth", "token", "--user", "dave", "--state-dir", tmp_path],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    claims = LocalSigner(tmp_path).verifier().verify(result.stdout.strip())

    assert claims["sub"] == "dave"
