"""Authentication, API keys and tenants through real server processes.

One gateway for most of the module: authentication on (``VOXGATE_AUTH=on`` on
loopback), HS256 and RS256 JWTs (an RSA key made here, its public half in a
file), a bootstrap admin token, gRPC on, and a first admin key created with
the CLI before the server started. Every path is driven over loopback with
httpx, the official ``openai`` SDK and a gRPC client; the start-up rules are
checked with processes that bind 0.0.0.0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.audio import decode
from tests.support.prompts import SENTENCE, speech, wav_bytes
from voxgate.grpc.protos import cosyvoice_pb2, cosyvoice_pb2_grpc
from voxgate.testing import ServerProcess, free_port

HS_SECRET = "integration-secret-of-at-least-32-bytes!!"
ADMIN_TOKEN = "bootstrap-admin-token-for-the-integration-tests"
CONSENT = "I, Test Speaker, agree that my voice may be used to make this voice."
SPEECH = {"model": "tts-1", "voice": "alloy", "input": "Hello.", "response_format": "wav"}


def voxgate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "voxgate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


@dataclass
class Gateway:
    server: ServerProcess
    env: dict[str, str]
    grpc_address: str
    rsa_key: rsa.RSAPrivateKey
    bootstrap_key: str  # an admin key made with `voxgate keys create` before the start
    keys: dict[str, str] = field(default_factory=dict)  # tenant -> a key made via the API
    key_ids: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def hs256(self, **claims: Any) -> str:
        return jwt.encode(_claims(**claims), HS_SECRET, algorithm="HS256")

    def rs256(self, **claims: Any) -> str:
        return jwt.encode(_claims(**claims), self.rsa_key, algorithm="RS256")


def _claims(**extra: Any) -> dict[str, Any]:
    base = {"sub": "svc", "tenant": "tenant-a", "exp": int(time.time()) + 600}
    return {k: v for k, v in {**base, **extra}.items() if v is not None}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("auth")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (root / "idp.pem").write_bytes(pem)
    grpc_port = free_port()
    env = {
        "VOXGATE_DATA_DIR": str(root),
        "VOXGATE_AUTH": "on",
        "VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "VOXGATE_JWT_SECRET": HS_SECRET,
        "VOXGATE_JWT_PUBLIC_KEY": str(root / "idp.pem"),
        "VOXGATE_JWT_ALGORITHMS": '["HS256", "RS256"]',
        "VOXGATE_JWT_ADMIN_CLAIM": "roles",
        "VOXGATE_GRPC_PORT": str(grpc_port),
    }
    created = voxgate(
        "keys", "create", "--tenant", "ops", "--name", "bootstrap", "--admin", env=env
    )
    assert created.returncode == 0, created.stderr
    bootstrap = created.stdout.strip()
    assert bootstrap.startswith("vg_")
    assert "not shown again" in created.stderr
    with ServerProcess(root, env) as server:
        yield Gateway(server, env, f"127.0.0.1:{grpc_port}", key, bootstrap)


@pytest.fixture(scope="module")
def http(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def tenants(gateway: Gateway, http: httpx.Client) -> Gateway:
    """Tenants A and B, each with a key, made through the admin API."""
    admin = bearer(ADMIN_TOKEN)
    for tenant in ("tenant-a", "tenant-b"):
        made = http.post("/v1/admin/tenants", json={"id": tenant}, headers=admin)
        assert made.status_code == 201, made.text
        key = http.post("/v1/admin/keys", json={"tenant": tenant, "name": "app"}, headers=admin)
        assert key.status_code == 201, key.text
        gateway.keys[tenant] = key.json()["key"]
        gateway.key_ids[tenant] = key.json()["id"]
    return gateway


@pytest.fixture(scope="module")
def voice_a(tenants: Gateway, http: httpx.Client) -> str:
    """A voice registered by tenant A."""
    response = http.post(
        "/v1/audio/voices",
        data={"name": "fox", "consent": CONSENT, "prompt_text": SENTENCE},
        files={"audio_sample": ("prompt.wav", wav_bytes(speech(), 24000), "audio/wav")},
        headers=bearer(tenants.keys["tenant-a"]),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


# -- what needs credentials ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"])
def test_probes_and_the_api_description_stay_open(http: httpx.Client, path: str) -> None:
    assert http.get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/audio/speech"),
        ("POST", "/v1/tts"),
        ("GET", "/v1/models"),
        ("GET", "/v1/audio/voices"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/admin/runtime"),
        ("GET", "/v1/admin/keys"),
        ("POST", "/inference_sft"),
        ("GET", "/no/such/route"),
    ],
)
def test_without_credentials_everything_else_is_401(
    http: httpx.Client, method: str, path: str
) -> None:
    response = http.request(method, path, json=SPEECH if method == "POST" else None)
    assert response.status_code == 401
    assert error_code(response) == "auth_required"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-request-id"]
    assert response.json()["error"]["type"] == "authentication_error"  # the OpenAI shape too


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("Basic dXNlcjpwYXNz", "auth_required"),
        ("Bearer vg_abcdefghijkl_" + "x" * 43, "invalid_api_key"),
        ("Bearer vg_malformed", "invalid_api_key"),
        ("Bearer not-a-key-nor-a-jwt", "invalid_token"),
    ],
)
def test_bad_credentials_are_401_with_their_code(
    http: httpx.Client, header: str, code: str
) -> None:
    response = http.get("/v1/models", headers={"Authorization": header})
    assert response.status_code == 401
    assert error_code(response) == code
    assert response.headers["www-authenticate"].startswith("Bearer")


# -- each way in ---------------------------------------------------------------------------


def test_the_key_made_by_the_cli_before_start_is_accepted(
    gateway: Gateway, http: httpx.Client
) -> None:
    response = http.get("/v1/models", headers=bearer(gateway.bootstrap_key))
    assert response.status_code == 200
    assert http.get("/v1/admin/runtime", headers=bearer(gateway.bootstrap_key)).status_code == 200
    listed = voxgate("keys", "list", "--json", env=gateway.env)
    assert listed.returncode == 0, listed.stderr
    ours = [k for k in json.loads(listed.stdout) if k["name"] == "bootstrap"]
    assert len(ours) == 1
    assert ours[0]["admin"] is True
    assert gateway.bootstrap_key not in listed.stdout


def test_the_access_log_names_tenant_and_key_id_never_the_key(
    tenants: Gateway, http: httpx.Client
) -> None:
    key = tenants.keys["tenant-b"]
    rid = "auth-log-check-1"
    response = http.get("/v1/models", headers={**bearer(key), "X-Request-ID": rid})
    assert response.status_code == 200

    def line() -> dict[str, Any] | None:
        for raw in tenants.server.log().splitlines():
            if raw.startswith("{") and rid in raw:
                return dict(json.loads(raw))
        return None

    deadline = time.monotonic() + 5
    while (found := line()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found is not None
    assert found["tenant"] == "tenant-b"
    assert found["key_id"] == tenants.key_ids["tenant-b"]
    assert found["auth"] == "api_key"
    log = tenants.server.log()
    for secret in (*tenants.keys.values(), tenants.bootstrap_key, ADMIN_TOKEN):
        assert secret not in log


def test_hs256_and_rs256_tokens(gateway: Gateway, http: httpx.Client) -> None:
    for token in (gateway.hs256(), gateway.rs256()):
        response = http.post("/v1/audio/speech", json=SPEECH, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert decode(response.content, "wav").duration > 0.2


def test_jwt_failures(gateway: Gateway, http: httpx.Client) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "token_expired": gateway.hs256(exp=int(time.time()) - 3600),
        "invalid_token": [
            jwt.encode(_claims(), other, algorithm="RS256"),  # wrong signature
            jwt.encode(_claims(), "x" * 40, algorithm="HS256"),  # wrong secret
            jwt.encode(_claims(), gateway.rsa_key, algorithm="RS512"),  # not configured
            gateway.hs256(tenant=None),  # no tenant claim
            jwt.encode({"sub": "x", "tenant": "tenant-a"}, HS_SECRET, algorithm="HS256"),  # no exp
            _unsigned(_claims()),  # alg none
        ],
    }
    for code, tokens in cases.items():
        for token in tokens if isinstance(tokens, list) else [tokens]:
            response = http.get("/v1/models", headers=bearer(token))
            assert response.status_code == 401, token
            assert error_code(response) == code, response.text


def _unsigned(claims: dict[str, Any]) -> str:
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def test_the_openai_sdk_with_a_voxgate_key(tenants: Gateway) -> None:
    sdk = openai.OpenAI(
        base_url=tenants.url + "/v1", api_key=tenants.keys["tenant-a"], max_retries=0
    )
    speech_ = sdk.audio.speech.create(
        model="tts-1", voice="alloy", input="Hi.", response_format="wav"
    )
    assert decode(speech_.content, "wav").duration > 0.2
    wrong = openai.OpenAI(base_url=tenants.url + "/v1", api_key="vg_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert caught.value.code == "invalid_api_key"


# -- the admin API -------------------------------------------------------------------------


def test_admin_routes_need_an_administrator(tenants: Gateway, http: httpx.Client) -> None:
    tenant_key = bearer(tenants.keys["tenant-a"])
    for method, path in [
        ("GET", "/v1/admin/runtime"),
        ("GET", "/v1/admin/tenants"),
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
        ("DELETE", f"/v1/admin/keys/{tenants.key_ids['tenant-b']}"),
        ("GET", "/v1/admin/anything-added-later"),
    ]:
        body = {"tenant": "tenant-a", "name": "x"} if method == "POST" else None
        response = http.request(method, path, json=body, headers=tenant_key)
        assert response.status_code == 403, (path, response.text)
        assert error_code(response) == "forbidden"
    user_jwt = bearer(tenants.hs256(roles=["user"]))
    assert http.get("/v1/admin/tenants", headers=user_jwt).status_code == 403
    admin_jwt = bearer(tenants.rs256(roles=["admin"]))
    assert http.get("/v1/admin/tenants", headers=admin_jwt).status_code == 200
    assert http.get("/v1/admin/runtime", headers=bearer(ADMIN_TOKEN)).json()["pid"] > 0


def test_tenants_and_keys_through_the_admin_api(tenants: Gateway, http: httpx.Client) -> None:
    admin = bearer(ADMIN_TOKEN)
    made = http.post(
        "/v1/admin/tenants",
        json={"id": "tenant-c", "name": "C", "requests_per_minute": 60},
        headers=admin,
    )
    assert made.status_code == 201
    assert made.json()["requests_per_minute"] == 60
    again = http.post("/v1/admin/tenants", json={"id": "tenant-c"}, headers=admin)
    assert again.status_code == 409
    assert error_code(again) == "tenant_exists"
    patched = http.patch(
        "/v1/admin/tenants/tenant-c",
        json={"requests_per_minute": None, "characters_per_day": 5000},
        headers=admin,
    )
    assert patched.status_code == 200
    assert (patched.json()["requests_per_minute"], patched.json()["characters_per_day"]) == (
        None,
        5000,
    )
    assert patched.json()["name"] == "C"
    listed = http.get("/v1/admin/tenants", headers=admin).json()["data"]
    assert {"tenant-a", "tenant-b", "tenant-c", "ops"} <= {t["id"] for t in listed}
    missing = http.post("/v1/admin/keys", json={"tenant": "nobody", "name": "x"}, headers=admin)
    assert missing.status_code == 404
    typo = http.post("/v1/admin/keys", json={"tenant": "tenant-c", "nme": "x"}, headers=admin)
    assert typo.status_code == 400

    key = http.post(
        "/v1/admin/keys",
        json={"tenant": "tenant-c", "name": "worker", "admin": True, "characters_per_day": 100},
        headers=admin,
    ).json()
    assert key["key"].startswith("vg_")
    assert key["id"].startswith("key_")
    assert key["key"].split("_")[1] == key["id"].removeprefix("key_")
    assert http.get("/v1/admin/tenants", headers=bearer(key["key"])).status_code == 200  # admin
    keys = http.get("/v1/admin/keys", params={"tenant": "tenant-c"}, headers=admin).json()
    assert [k["id"] for k in keys["data"]] == [key["id"]]
    assert keys["data"][0]["characters_per_day"] == 100
    assert "key" not in keys["data"][0]
    assert key["key"] not in json.dumps(keys)


def test_a_revoked_key_is_refused_by_the_very_next_request(
    tenants: Gateway, http: httpx.Client
) -> None:
    admin = bearer(ADMIN_TOKEN)
    made = http.post("/v1/admin/keys", json={"tenant": "tenant-a", "name": "temp"}, headers=admin)
    key, key_id = made.json()["key"], made.json()["id"]
    assert http.get("/v1/models", headers=bearer(key)).status_code == 200
    revoked = http.delete(f"/v1/admin/keys/{key_id}", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    after = http.get("/v1/models", headers=bearer(key))
    assert after.status_code == 401
    assert error_code(after) == "invalid_api_key"
    assert "revoked" in after.json()["error"]["message"]


def test_revoking_with_the_cli_reaches_the_running_server(
    tenants: Gateway, http: httpx.Client
) -> None:
    made = http.post(
        "/v1/admin/keys", json={"tenant": "tenant-a", "name": "cli"}, headers=bearer(ADMIN_TOKEN)
    ).json()
    assert http.get("/v1/models", headers=bearer(made["key"])).status_code == 200
    result = voxgate("keys", "revoke", made["id"], env=tenants.env)
    assert result.returncode == 0, result.stderr
    assert http.get("/v1/models", headers=bearer(made["key"])).status_code == 401


def test_a_tenant_lists_and_revokes_its_own_keys(tenants: Gateway, http: httpx.Client) -> None:
    admin = bearer(ADMIN_TOKEN)
    spare = http.post("/v1/admin/keys", json={"tenant": "tenant-b", "name": "spare"}, headers=admin)
    spare_key, spare_id = spare.json()["key"], spare.json()["id"]
    own = bearer(tenants.keys["tenant-b"])
    listed = http.get("/v1/keys", headers=own).json()["data"]
    assert {k["tenant"] for k in listed} == {"tenant-b"}
    assert {tenants.key_ids["tenant-b"], spare_id} <= {k["id"] for k in listed}
    assert tenants.key_ids["tenant-a"] not in {k["id"] for k in listed}
    assert http.delete(f"/v1/keys/{spare_id}", headers=own).status_code == 200
    assert http.get("/v1/models", headers=bearer(spare_key)).status_code == 401


def test_a_tenant_cannot_revoke_another_tenants_key(tenants: Gateway, http: httpx.Client) -> None:
    as_b = bearer(tenants.keys["tenant-b"])
    theirs = http.delete(f"/v1/keys/{tenants.key_ids['tenant-a']}", headers=as_b)
    unknown = http.delete("/v1/keys/key_000000000000", headers=as_b)
    assert theirs.status_code == unknown.status_code == 404
    assert error_code(theirs) == error_code(unknown) == "not_found"
    assert http.get("/v1/models", headers=bearer(tenants.keys["tenant-a"])).status_code == 200


# -- tenant isolation ----------------------------------------------------------------------


def test_another_tenants_voice_does_not_exist(
    tenants: Gateway, http: httpx.Client, voice_a: str
) -> None:
    for b in (bearer(tenants.keys["tenant-b"]), bearer(tenants.rs256(tenant="tenant-b"))):
        assert http.get(f"/v1/audio/voices/{voice_a}", headers=b).status_code == 404
        assert http.get(f"/v1/audio/voices/{voice_a}/sample", headers=b).status_code == 404
        assert http.delete(f"/v1/audio/voices/{voice_a}", headers=b).status_code == 404
        listing = http.get("/v1/audio/voices", params={"limit": 1000}, headers=b).json()
        assert voice_a not in {v["id"] for v in listing["data"]}
        used = http.post("/v1/audio/speech", json={**SPEECH, "voice": voice_a}, headers=b)
        assert used.status_code == 400
        assert error_code(used) == "voice_not_found"
    a = bearer(tenants.keys["tenant-a"])
    assert http.get(f"/v1/audio/voices/{voice_a}", headers=a).status_code == 200
    listing = http.get("/v1/audio/voices", params={"limit": 1000}, headers=a).json()
    assert voice_a in {v["id"] for v in listing["data"]}
    mine = http.post("/v1/audio/speech", json={**SPEECH, "voice": voice_a}, headers=a)
    assert mine.status_code == 200, mine.text
    # A JWT naming tenant A sees A's voice too: the tenant is the claim, not the key.
    as_jwt = bearer(tenants.hs256(tenant="tenant-a"))
    assert http.get(f"/v1/audio/voices/{voice_a}", headers=as_jwt).status_code == 200


# -- gRPC ----------------------------------------------------------------------------------


def _grpc(gateway: Gateway, spk_id: str, token: str | None) -> tuple[grpc.StatusCode, bytes]:
    request = cosyvoice_pb2.Request(
        sft_request=cosyvoice_pb2.sftRequest(spk_id=spk_id, tts_text="Hello there.")
    )
    metadata = [("authorization", f"Bearer {token}")] if token else None
    audio = b""
    with grpc.insecure_channel(gateway.grpc_address) as channel:
        stub = cosyvoice_pb2_grpc.CosyVoiceStub(channel)
        try:
            for message in stub.Inference(request, metadata=metadata, timeout=60):
                audio += message.tts_audio
        except grpc.RpcError as exc:
            return exc.code(), audio
    return grpc.StatusCode.OK, audio


def test_grpc_applies_the_same_authentication(tenants: Gateway, voice_a: str) -> None:
    assert _grpc(tenants, "中文女", None)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert _grpc(tenants, "中文女", "vg_bogus")[0] == grpc.StatusCode.UNAUTHENTICATED
    expired = tenants.hs256(exp=int(time.time()) - 3600)
    assert _grpc(tenants, "中文女", expired)[0] == grpc.StatusCode.UNAUTHENTICATED
    code, audio = _grpc(tenants, "中文女", tenants.keys["tenant-b"])
    assert code == grpc.StatusCode.OK
    assert len(audio) > 22050  # over half a second of int16 at 22050 Hz
    # The tenant reaches the pipeline: A's voice speaks for A, does not exist for B.
    code, audio = _grpc(tenants, voice_a, tenants.keys["tenant-a"])
    assert code == grpc.StatusCode.OK
    assert audio
    assert _grpc(tenants, voice_a, tenants.keys["tenant-b"])[0] == grpc.StatusCode.NOT_FOUND


def test_grpc_health_stays_open(tenants: Gateway) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(tenants.grpc_address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert check.status == health_pb2.HealthCheckResponse.SERVING


# -- WebSocket scopes ----------------------------------------------------------------------


async def test_a_websocket_without_credentials_is_refused_in_the_handshake(
    gateway: Gateway,
) -> None:
    import websockets

    url = gateway.url.replace("http://", "ws://") + "/v1/any-websocket"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "auth_required"


# -- when authentication is on, and when the gateway refuses to start -----------------------


def test_loopback_default_is_open_without_credentials(server: ServerProcess) -> None:
    """The shared loopback server runs with the defaults: auto means off."""
    assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 200
    assert httpx.get(server.url + "/v1/admin/runtime", timeout=30).status_code == 200


def _serve_0000(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    port = str(free_port())
    return voxgate(
        "serve", "--host", "0.0.0.0", "--port", port, env={"VOXGATE_DATA_DIR": str(root), **env}
    )


def test_off_on_a_public_address_refuses_to_start(tmp_path: Path) -> None:
    result = _serve_0000(tmp_path, {"VOXGATE_AUTH": "off"})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "refusing to start" in output
    assert "VOXGATE_ALLOW_UNAUTHENTICATED" in output


def test_on_with_no_way_to_authenticate_refuses_to_start(tmp_path: Path) -> None:
    result = _serve_0000(tmp_path, {})  # auto: on, since 0.0.0.0 is reachable
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "refusing to start" in output
    assert "voxgate keys create" in output


def test_auto_on_a_public_address_turns_authentication_on(tmp_path: Path) -> None:
    env = {"VOXGATE_ADMIN_TOKEN": ADMIN_TOKEN, "VOXGATE_AUTH_METRICS": "true"}
    with ServerProcess(tmp_path, env, args=["--host", "0.0.0.0"]) as server:
        assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 401
        with_token = httpx.get(server.url + "/v1/models", headers=bearer(ADMIN_TOKEN), timeout=30)
        assert with_token.status_code == 200
        # Protected metrics need an administrator: they show every tenant's numbers.
        admin = bearer(ADMIN_TOKEN)
        assert httpx.get(server.url + "/metrics", timeout=30).status_code == 401
        assert httpx.get(server.url + "/metrics", headers=admin, timeout=30).status_code == 200
        key = httpx.post(
            server.url + "/v1/admin/keys",
            json={"tenant": "t1", "name": "app"},
            headers=admin,
            timeout=30,
        )
        assert key.status_code == 404  # the admin API does not make tenants by accident
        httpx.post(server.url + "/v1/admin/tenants", json={"id": "t1"}, headers=admin, timeout=30)
        key = httpx.post(
            server.url + "/v1/admin/keys",
            json={"tenant": "t1", "name": "app"},
            headers=admin,
            timeout=30,
        )
        tenant_key = bearer(key.json()["key"])
        metrics = httpx.get(server.url + "/metrics", headers=tenant_key, timeout=30)
        assert metrics.status_code == 403
        assert "authentication on (VOXGATE_AUTH=auto; listening on 0.0.0.0)" in server.log()


def test_off_on_a_public_address_with_the_explicit_override(tmp_path: Path) -> None:
    env = {"VOXGATE_AUTH": "off", "VOXGATE_ALLOW_UNAUTHENTICATED": "true"}
    with ServerProcess(tmp_path, env, args=["--host", "0.0.0.0"]) as server:
        assert httpx.get(server.url + "/v1/models", timeout=30).status_code == 200
