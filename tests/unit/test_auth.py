"""Authentication in-process: JWT verification (PyJWT, real RSA keys made here),
the API key format and store (a real SQLite database), the authenticator's
answers, and the rules that decide whether authentication is on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from voxgate import errors
from voxgate.config import Settings
from voxgate.errors import VoxgateError
from voxgate.serving.auth import (
    Authenticator,
    Unauthenticated,
    auth_enabled,
    exposure_problem,
    is_loopback,
    startup_problem,
)
from voxgate.serving.keys import (
    KeyNotFound,
    KeyStore,
    TenantExists,
    TenantNotFound,
    hash_secret,
    new_key,
    parse_key,
)
from voxgate.serving.principal import Limits
from voxgate.serving.tokens import AuthConfigError, JwtVerifier, TokenRejected, load_public_key
from voxgate.store.db import Database

SECRET = "a-test-secret-that-is-at-least-32-bytes-long"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "svc-a", "tenant": "acme", "exp": int(time.time()) + 300, **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token built by hand, as an attacker would (PyJWT refuses to make these)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key else b""
    return f"{signing_input}.{b64(signature)}"


def rejected(verifier: JwtVerifier, token: str) -> VoxgateError:
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token)
    assert caught.value.status == 401
    return caught.value


# -- JWT -------------------------------------------------------------------------------


def test_hs256_token_is_accepted_with_its_claims() -> None:
    verifier = JwtVerifier(secret=SECRET.encode())
    got = verifier.verify(jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert verifier.tenant(got) == "acme"
    assert got["sub"] == "svc-a"
    assert verifier.algorithms == ("HS256",)


def test_rs256_token_is_accepted(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(public_key=load_public_key(public_pem(rsa_key)))
    token = jwt.encode(claims(tenant="globex"), rsa_key, algorithm="RS256")
    assert verifier.tenant(verifier.verify(token)) == "globex"
    assert verifier.algorithms == ("RS256",)


def test_public_key_from_a_file(rsa_key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    path = tmp_path / "idp.pem"
    path.write_text(public_pem(rsa_key))
    verifier = JwtVerifier(public_key=load_public_key(str(path)))
    assert verifier.verify(jwt.encode(claims(), rsa_key, algorithm="RS256"))["tenant"] == "acme"


def test_an_expired_token_is_token_expired() -> None:
    verifier = JwtVerifier(secret=SECRET.encode(), leeway_s=0)
    token = jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256")
    assert rejected(verifier, token).code == errors.TOKEN_EXPIRED


def test_leeway_tolerates_a_little_clock_skew() -> None:
    verifier = JwtVerifier(secret=SECRET.encode(), leeway_s=30)
    token = jwt.encode(claims(exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert verifier.verify(token)["tenant"] == "acme"


def test_a_token_without_exp_is_refused() -> None:
    verifier = JwtVerifier(secret=SECRET.encode())
    token = jwt.encode({"sub": "x", "tenant": "acme"}, SECRET, algorithm="HS256")
    error = rejected(verifier, token)
    assert error.code == errors.INVALID_TOKEN
    assert "exp" in error.message


def test_a_wrong_signature_is_invalid_token(rsa_key: rsa.RSAPrivateKey) -> None:
    hs = JwtVerifier(secret=SECRET.encode())
    forged = jwt.encode(claims(), "another-secret-that-is-also-32-bytes-long!", algorithm="HS256")
    assert rejected(hs, forged).code == errors.INVALID_TOKEN
    rs = JwtVerifier(public_key=load_public_key(public_pem(rsa_key)))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert rejected(rs, jwt.encode(claims(), other, algorithm="RS256")).code == errors.INVALID_TOKEN


def test_an_algorithm_not_configured_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = JwtVerifier(public_key=load_public_key(public_pem(rsa_key)))
    error = rejected(verifier, jwt.encode(claims(), SECRET, algorithm="HS256"))
    assert error.code == errors.INVALID_TOKEN
    assert "HS256" in error.message


def test_alg_none_is_never_accepted() -> None:
    verifier = JwtVerifier(secret=SECRET.encode())
    token = hand_signed({"alg": "none", "typ": "JWT"}, claims(), None)
    assert rejected(verifier, token).code == errors.INVALID_TOKEN
    with pytest.raises(AuthConfigError):
        JwtVerifier(secret=SECRET.encode(), algorithms=["none"])


def test_hs256_signed_with_the_public_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """The classic confusion: the attacker HMACs with the (public) RSA key."""
    pem = public_pem(rsa_key)
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(admin=True), pem.encode())
    rs_only = JwtVerifier(public_key=load_public_key(pem))
    assert rejected(rs_only, token).code == errors.INVALID_TOKEN
    both = JwtVerifier(
        secret=SECRET.encode(), public_key=load_public_key(pem), algorithms=["HS256", "RS256"]
    )
    assert rejected(both, token).code == errors.INVALID_TOKEN  # checked against the secret


def test_a_token_without_the_tenant_claim_is_refused() -> None:
    verifier = JwtVerifier(secret=SECRET.encode())
    no_tenant = {k: v for k, v in claims().items() if k != "tenant"}
    error = rejected(verifier, jwt.encode(no_tenant, SECRET, algorithm="HS256"))
    assert error.code == errors.INVALID_TOKEN
    assert "tenant" in error.message
    not_a_string = jwt.encode(claims(tenant=["a", "b"]), SECRET, algorithm="HS256")
    assert rejected(verifier, not_a_string).code == errors.INVALID_TOKEN


def test_the_tenant_claim_is_configurable() -> None:
    verifier = JwtVerifier(secret=SECRET.encode(), tenant_claim="org_id")
    token = jwt.encode(claims(org_id="initech"), SECRET, algorithm="HS256")
    assert verifier.tenant(verifier.verify(token)) == "initech"


def test_issuer_and_audience() -> None:
    verifier = JwtVerifier(secret=SECRET.encode(), issuer="https://idp.example", audience="voxgate")
    good = claims(iss="https://idp.example", aud="voxgate")
    assert verifier.verify(jwt.encode(good, SECRET, algorithm="HS256"))["tenant"] == "acme"
    for bad in (
        claims(iss="https://evil.example", aud="voxgate"),
        claims(iss="https://idp.example", aud="another-service"),
        claims(aud="voxgate"),  # no issuer
        claims(iss="https://idp.example"),  # no audience
    ):
        assert rejected(verifier, jwt.encode(bad, SECRET, algorithm="HS256")).code == (
            errors.INVALID_TOKEN
        )


def test_a_token_for_another_audience_is_refused_when_none_is_configured() -> None:
    verifier = JwtVerifier(secret=SECRET.encode())
    token = jwt.encode(claims(aud="another-service"), SECRET, algorithm="HS256")
    assert rejected(verifier, token).code == errors.INVALID_TOKEN


def test_garbage_is_invalid_token() -> None:
    verifier = JwtVerifier(secret=SECRET.encode())
    assert rejected(verifier, "not.a.jwt").code == errors.INVALID_TOKEN
    assert rejected(verifier, "plainly-not-a-token").code == errors.INVALID_TOKEN


def test_admin_claim_forms() -> None:
    verifier = JwtVerifier(
        secret=SECRET.encode(), admin_claim="realm_access.roles", admin_value="vg-admin"
    )
    assert verifier.is_admin({"realm_access": {"roles": ["user", "vg-admin"]}})
    assert not verifier.is_admin({"realm_access": {"roles": ["user"]}})
    assert not verifier.is_admin({"roles": ["vg-admin"]})
    scope = JwtVerifier(secret=SECRET.encode(), admin_claim="scope", admin_value="admin")
    assert scope.is_admin({"scope": "read admin"})
    assert not scope.is_admin({"scope": "read administrator"})
    flag = JwtVerifier(secret=SECRET.encode(), admin_claim="admin")
    assert flag.is_admin({"admin": True})
    assert not flag.is_admin({"admin": "false"})
    assert not JwtVerifier(secret=SECRET.encode()).is_admin({"admin": True})  # not configured


def test_configuration_mistakes_are_caught_at_start(
    rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    with pytest.raises(AuthConfigError, match="VOXGATE_JWT_PUBLIC_KEY"):
        JwtVerifier(secret=SECRET.encode(), algorithms=["RS256"])
    with pytest.raises(AuthConfigError, match="VOXGATE_JWT_SECRET"):
        JwtVerifier(public_key=load_public_key(public_pem(rsa_key)), algorithms=["HS256"])
    with pytest.raises(AuthConfigError, match="readable file"):
        load_public_key(str(tmp_path / "missing.pem"))
    private = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(AuthConfigError, match="private key"):
        load_public_key(private)
    with pytest.raises(AuthConfigError, match="neither"):
        JwtVerifier.from_settings(Settings(jwt_algorithms=["RS256"]))
    assert JwtVerifier.from_settings(Settings()) is None


def test_es256_when_configured() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    verifier = JwtVerifier(public_key=load_public_key(public_pem(key)), algorithms=["ES256"])
    assert verifier.verify(jwt.encode(claims(), key, algorithm="ES256"))["tenant"] == "acme"


# -- the key format ----------------------------------------------------------------------


def test_key_format_and_hash() -> None:
    prefix, secret = new_key()
    key = f"vg_{prefix}_{secret}"
    assert len(prefix) == 12
    assert prefix.isalnum()
    assert prefix.islower()
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) >= 32
    assert parse_key(key) == (prefix, secret)
    digest = hash_secret(secret)
    assert digest.startswith("sha256$")
    assert secret not in digest
    assert digest == hash_secret(secret)
    assert digest != hash_secret(new_key()[1])
    assert new_key() != new_key()


@pytest.mark.parametrize(
    "token",
    [
        "vg_short_" + "a" * 43,
        "vg_abcdefghijkl_tooshort",
        "vg_ABCDEFGHIJKL_" + "a" * 43,  # the prefix is lower case
        "sk_abcdefghijkl_" + "a" * 43,
        "vg_abcdefghijkl_" + "a" * 40 + "!!!",
    ],
)
def test_malformed_keys_do_not_parse(token: str) -> None:
    assert parse_key(token) is None


# -- the key store (a real SQLite database) -----------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KeyStore]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await db.migrate()
    keys = KeyStore(db, touch_interval_s=3600)
    yield keys
    await keys.close()
    await db.close()


async def test_keys_are_stored_hashed_and_verified(store: KeyStore) -> None:
    await store.create_tenant("acme", limits=Limits(100, 5000))
    issued = await store.create_key("acme", "ci", limits=Limits(requests_per_minute=10))
    assert issued.secret.startswith(f"vg_{issued.key.prefix}_")
    assert issued.key.id == f"key_{issued.key.prefix}"
    match = await store.verify(issued.secret)
    assert match is not None
    assert match.key.id == issued.key.id
    assert match.key.limits == Limits(10, None)
    assert match.tenant.limits == Limits(100, 5000)
    # Only a digest is in the database.
    async with store.db.engine.connect() as connection:
        rows = (await connection.exec_driver_sql("SELECT secret_hash FROM api_keys")).all()
    assert rows == [(hash_secret(parse_key(issued.secret)[1]),)]  # type: ignore[index]
    assert issued.secret.split("_", 2)[2] not in rows[0][0]


async def test_a_wrong_secret_or_unknown_prefix_matches_nothing(store: KeyStore) -> None:
    issued = await store.create_key("acme", "ci", create_tenant=True)
    prefix, secret = parse_key(issued.secret)  # type: ignore[misc]
    tampered = f"vg_{prefix}_{secret[:-2]}{'AA' if secret[-2:] != 'AA' else 'BB'}"
    assert await store.verify(tampered) is None
    other_prefix, _other_secret = new_key()
    assert await store.verify(f"vg_{other_prefix}_{secret}") is None
    assert await store.verify("vg_not-a-key") is None


async def test_revocation_is_seen_by_the_next_lookup(store: KeyStore, tmp_path: Path) -> None:
    issued = await store.create_key("acme", "ci", create_tenant=True)
    # A second store over the same database: another gateway, say.
    other_db = Database(store.db.url)
    other = KeyStore(other_db)
    try:
        assert (await other.verify(issued.secret)) is not None
        revoked = await store.revoke(issued.key.id)
        assert revoked.revoked_at is not None
        match = await other.verify(issued.secret)
        assert match is not None
        assert not match.key.active
        assert await store.active_key_count() == 0
    finally:
        await other_db.close()


async def test_revoking_within_a_tenant_hides_other_tenants_keys(store: KeyStore) -> None:
    a = await store.create_key("tenant-a", "a", create_tenant=True)
    await store.create_tenant("tenant-b")
    with pytest.raises(KeyNotFound) as caught:
        await store.revoke(a.key.id, tenant="tenant-b")
    assert caught.value.status == 404
    unknown = await _error(store.revoke("key_doesnotexist0", tenant="tenant-b"))
    assert unknown.code == caught.value.code  # indistinguishable from an unknown id
    assert (await store.verify(a.secret)) is not None
    assert (await store.revoke(a.key.id, tenant="tenant-a")).revoked_at is not None


async def _error(awaitable: Any) -> VoxgateError:
    with pytest.raises(VoxgateError) as caught:
        await awaitable
    return caught.value


async def test_listing_never_includes_secrets(store: KeyStore) -> None:
    first = await store.create_key("acme", "one", create_tenant=True)
    second = await store.create_key("acme", "two", admin=True)
    await store.create_key("globex", "three", create_tenant=True)
    listed = await store.keys("acme")
    assert {k.id for k in listed} == {first.key.id, second.key.id}
    assert [k.admin for k in listed if k.id == second.key.id] == [True]
    for key in listed:
        assert all(first.secret not in str(v) for v in vars_of(key))
    assert len(await store.keys()) == 3


def vars_of(key: object) -> list[object]:
    return [getattr(key, f) for f in key.__slots__]  # type: ignore[attr-defined]


async def test_tenants(store: KeyStore) -> None:
    await store.create_tenant("acme", name="Acme Corp", limits=Limits(60, None))
    with pytest.raises(TenantExists):
        await store.create_tenant("acme")
    with pytest.raises(TenantNotFound):
        await store.create_key("nobody", "x")
    with pytest.raises(VoxgateError) as bad:
        await store.create_tenant("no spaces allowed")
    assert bad.value.code == errors.INVALID_REQUEST
    updated = await store.update_tenant("acme", {"requests_per_minute": None})
    assert updated.limits == Limits(None, None)
    assert updated.name == "Acme Corp"
    updated = await store.update_tenant("acme", {"characters_per_day": 1000, "name": "Acme"})
    assert (updated.name, updated.limits) == ("Acme", Limits(None, 1000))
    assert [t.id for t in await store.tenants()] == ["acme"]
    with pytest.raises(TenantNotFound):
        await store.update_tenant("nobody", {"name": "x"})


async def test_last_used_is_written_at_most_once_per_interval(store: KeyStore) -> None:
    issued = await store.create_key("acme", "ci", create_tenant=True)
    assert (await store.keys("acme"))[0].last_used_at is None
    for _ in range(5):
        assert await store.verify(issued.secret) is not None
    await store.close()  # wait for the background write
    first = (await store.keys("acme"))[0].last_used_at
    assert first is not None
    assert await store.verify(issued.secret) is not None
    await store.close()
    assert (await store.keys("acme"))[0].last_used_at == first  # not rewritten within the hour
    store.touch_interval_s = 0
    await store.verify(issued.secret)
    await store.close()
    later = (await store.keys("acme"))[0].last_used_at
    assert later is not None
    assert later > first


# -- the authenticator -------------------------------------------------------------------


async def test_authenticator_answers(store: KeyStore, rsa_key: rsa.RSAPrivateKey) -> None:
    settings = Settings(
        admin_token="bootstrap-admin-token",  # type: ignore[arg-type]
        jwt_public_key=public_pem(rsa_key),
        jwt_admin_claim="roles",
    )
    auth = Authenticator(settings, store)
    await store.create_tenant("acme", limits=Limits(30, None))
    issued = await store.create_key("acme", "ci", limits=Limits(None, 99))

    by_key = await auth.authenticate(f"Bearer {issued.secret}", "10.0.0.1")
    assert (by_key.tenant, by_key.key_id, by_key.method) == ("acme", issued.key.id, "api_key")
    assert (by_key.limits, by_key.tenant_limits) == (Limits(None, 99), Limits(30, None))
    assert by_key.client == "10.0.0.1"
    assert not by_key.admin

    admin = await auth.authenticate("bearer bootstrap-admin-token")
    assert admin.admin
    assert admin.method == "admin_token"

    token = jwt.encode(claims(roles=["admin"]), rsa_key, algorithm="RS256")
    by_jwt = await auth.authenticate(f"Bearer {token}")
    assert (by_jwt.tenant, by_jwt.subject, by_jwt.method) == ("acme", "svc-a", "jwt")
    assert by_jwt.admin
    assert by_jwt.tenant_limits == Limits(30, None)

    async def code(header: str | None) -> str:
        with pytest.raises(Unauthenticated) as caught:
            await auth.authenticate(header)
        assert caught.value.headers()["WWW-Authenticate"].startswith("Bearer ")
        return caught.value.code

    assert await code(None) == errors.AUTH_REQUIRED
    assert await code("Basic dXNlcjpwYXNz") == errors.AUTH_REQUIRED
    assert await code("Bearer bootstrap-admin-tokeN") == errors.INVALID_TOKEN  # tried as JWT
    assert await code("Bearer " + issued.secret[:-1]) == errors.INVALID_API_KEY
    await store.revoke(issued.key.id)
    assert await code(f"Bearer {issued.secret}") == errors.INVALID_API_KEY


async def test_without_jwt_other_bearers_are_invalid_api_keys(store: KeyStore) -> None:
    auth = Authenticator(Settings(), store)
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate("Bearer sk-openai-style-key")
    assert caught.value.code == errors.INVALID_API_KEY


# -- whether authentication is on ----------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("gateway.internal", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_auto_mode_follows_every_listener() -> None:
    assert not auth_enabled(Settings(host="127.0.0.1"))
    assert auth_enabled(Settings(host="0.0.0.0"))
    assert auth_enabled(Settings(host="127.0.0.1", grpc_port=50000, grpc_host="0.0.0.0"))
    assert not auth_enabled(Settings(host="127.0.0.1", grpc_port=50000))
    assert auth_enabled(Settings(host="127.0.0.1", auth="on"))
    assert not auth_enabled(Settings(host="0.0.0.0", auth="off"))


def test_off_on_a_reachable_address_needs_an_explicit_override() -> None:
    problem = exposure_problem(Settings(host="0.0.0.0", auth="off"))
    assert problem is not None
    assert "VOXGATE_ALLOW_UNAUTHENTICATED" in problem
    assert "0.0.0.0" in problem
    assert (
        exposure_problem(Settings(host="0.0.0.0", auth="off", allow_unauthenticated=True)) is None
    )
    assert exposure_problem(Settings(host="127.0.0.1", auth="off")) is None
    assert exposure_problem(Settings(host="0.0.0.0")) is None


async def test_on_with_no_way_in_refuses_to_start(store: KeyStore) -> None:
    settings = Settings(host="0.0.0.0")
    problem = await startup_problem(settings, Authenticator(settings, store))
    assert problem is not None
    assert "voxgate keys create" in problem
    with_token = Settings(host="0.0.0.0", admin_token="t" * 40)  # type: ignore[arg-type]
    assert await startup_problem(with_token, Authenticator(with_token, store)) is None
    await store.create_key("default", "bootstrap", admin=True, create_tenant=True)
    assert await startup_problem(settings, Authenticator(settings, store)) is None
