"""Settings: ``VOXGATE_*`` environment variables, an optional TOML file, and
defaults that make the embedded mode work with no configuration at all.

Precedence, highest first: explicit arguments (CLI flags), environment,
the TOML file named by ``VOXGATE_CONFIG`` (or ``--config``), defaults.
Every field is documented in docs/configuration.md (a test keeps the two in
step).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "voxgate"


class AsrConfig(BaseModel):
    """The speech recognizer that transcribes voice prompts sent without text."""

    kind: str = "pocketsphinx"  # pocketsphinx | sensevoice | faster-whisper | none
    options: dict[str, Any] = Field(default_factory=dict)


class EngineConfig(BaseModel):
    """One engine instance: its kind (plugin) and kind-specific options."""

    kind: str
    options: dict[str, Any] = Field(default_factory=dict)
    queue_size: int | None = None  # overrides Settings.queue_size for this engine
    queue_timeout_s: float | None = None
    timeout_s: float | None = None  # overrides Settings.engine_timeout_s
    # capacity counted across every gateway (Redis) instead of per gateway
    shared_admission: bool | None = None
    # Interchangeable instances behind the one name (serving/router.py): each a
    # dict of option overrides, optionally with an "id" (default: its index).
    # Empty: the engine is a single instance, as before, with no breaker.
    endpoints: list[dict[str, Any]] = Field(default_factory=list)
    # Run the engine in a supervised child process (worker/supervisor.py),
    # restarted if it crashes and replaced without failing a request after
    # this many requests or above this resident memory.
    isolate: bool = False
    recycle_after_requests: int | None = Field(None, ge=1)
    recycle_rss_mb: float | None = Field(None, gt=0)


def _default_engines() -> dict[str, EngineConfig]:
    return {"espeak": EngineConfig(kind="espeak")}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VOXGATE_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    # Server
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = "info"
    log_format: Literal["auto", "json", "text"] = "auto"
    max_body_bytes: int = 1_048_576
    # Multipart uploads (voice prompts) carry audio: a 15 s WAV at 48 kHz
    # stereo is 2.9 MB. Enforced while the body arrives, like max_body_bytes.
    max_upload_bytes: int = 20_971_520
    max_job_body_bytes: int = 16_777_216  # POST /v1/jobs: up to a million characters
    # h11, not httptools: httptools drops the body of any request carrying
    # "Upgrade: h2c", which every JDK HttpClient sends over plain HTTP
    # (uvicorn issue #2722). Java backends are voxgate's main callers.
    http_implementation: Literal["h11", "httptools"] = "h11"
    # The web playground at / (api/web.py); false: / redirects to /docs.
    playground: bool = True

    # gRPC (the official CosyVoice service, for drop-in migration); off unless set
    grpc_port: int | None = None
    grpc_host: str | None = None  # defaults to host

    # Streamed text sessions (WebSocket /v1/audio/speech/stream, gRPC
    # StreamingSynthesize; serving/session.py): a session that neither sends
    # nor takes anything for this long while waiting for text is closed
    ws_idle_timeout_s: float = Field(30.0, gt=0)
    ws_max_message_bytes: int = Field(65_536, ge=1024)  # one client message
    ws_max_text_chars: int = Field(20_000, ge=1)  # all the text of one session

    # Engines
    engines: dict[str, EngineConfig] = Field(default_factory=_default_engines)
    default_engine: str | None = None
    model_aliases: dict[str, str] = Field(default_factory=dict)
    # Engine behind the CosyVoice-compatible surfaces (/inference_*, gRPC);
    # the default engine when unset.
    cosyvoice_compat_engine: str | None = None
    openai_models: list[str] = Field(
        default_factory=lambda: ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "gpt-4o-tts"]
    )

    # Voices
    default_voice: str | None = None
    voice_aliases: dict[str, str] = Field(default_factory=dict)
    # Speech (after trimming silence) a registered or inline prompt must hold;
    # CosyVoice refuses more than 30 s, so that is the ceiling.
    voice_min_seconds: float = Field(3.0, ge=0.5, le=30.0)
    voice_max_seconds: float = Field(15.0, ge=1.0, le=30.0)
    asr: AsrConfig = Field(default_factory=AsrConfig)
    voice_usage_flush_s: float = Field(5.0, gt=0)  # how often use counts are written

    # State (embedded: SQLite in data_dir; distributed: PostgreSQL)
    database_url: str | None = None
    # Shared state between gateways (limits, cache, breakers, engine registry):
    # in-process when unset, Redis when set.
    redis_url: str | None = None
    redis_prefix: str = "voxgate:"

    # Metrics and tracing (obs/). Tracing is off unless an OTLP/HTTP collector
    # is named and the otel extra is installed; standard OTEL_* variables
    # (sampler, headers, service name) apply.
    metrics_enabled: bool = True
    otel_endpoint: str | None = None

    # Authentication (serving/auth.py, docs/auth.md). auto: on unless every
    # listener is loopback; off on a reachable address refuses to start unless
    # allow_unauthenticated says a proxy in front authenticates.
    auth: Literal["auto", "on", "off"] = "auto"
    allow_unauthenticated: bool = False
    admin_token: SecretStr | None = None  # bootstrap admin credential
    jwt_secret: SecretStr | None = None  # HS256 (and HS384/512)
    jwt_public_key: str | None = None  # PEM text or a file path: RS256 (and others)
    jwt_algorithms: list[str] = Field(default_factory=list)  # empty: from the keys given
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_tenant_claim: str = "tenant"
    jwt_admin_claim: str | None = None  # e.g. "roles" or "realm_access.roles"
    jwt_admin_value: str = "admin"
    jwt_leeway_s: float = Field(30.0, ge=0)  # clock skew allowed on exp / nbf / iat
    auth_metrics: bool = False  # whether /metrics needs credentials too
    api_key_touch_s: float = Field(60.0, ge=0)  # how often a key's last_used_at is written

    # Rate limits and quotas (serving/limits.py, serving/quota.py). None means
    # unlimited, so the embedded quickstart and benchmarks are unaffected; a
    # key's or tenant's own limits override these defaults.
    rate_limit_rpm: int | None = Field(None, ge=1)  # per key or subject
    rate_limit_anonymous_rpm: int | None = Field(None, ge=1)  # per client address
    quota_characters_per_day: int | None = Field(None, ge=1)  # per key, subject or address

    # Text
    max_input_chars: int = 4096
    first_segment_chars: int = 60

    # Audio
    openai_sample_rate: int = 24000
    encode_threads: int = 0  # 0: one per CPU core

    # Jobs
    jobs_enabled: bool = True
    job_backend: Literal["embedded", "celery"] = "embedded"
    job_workers: int = Field(1, ge=0)  # embedded: jobs run at once in this process
    job_max_chars: int = Field(1_000_000, ge=1)
    job_keep_s: float = Field(86_400.0, gt=0)  # finished jobs are removed after this
    job_lease_s: float = Field(30.0, gt=0)
    job_segment_chars: int = Field(300, ge=20)
    webhook_secret: SecretStr | None = None  # HMAC key for X-Voxgate-Signature
    webhook_allow: list[str] = Field(default_factory=list)  # hosts or CIDRs allowed
    webhook_max_attempts: int = Field(8, ge=1)
    public_url: str | None = None  # base of links in callbacks
    celery_broker_url: str | None = None  # defaults to VOXGATE_REDIS_URL
    celery_visibility_timeout_s: float = Field(3600.0, gt=0)
    # /metrics and /healthz of a Celery job worker, on VOXGATE_HOST (unset: off)
    celery_metrics_port: int | None = Field(None, ge=0)
    # Where audio lives (prompts, features, job results): a shared filesystem
    # path in the distributed mode, so every gateway and worker sees the same.
    blob_dir: Path | None = None

    # Admission
    queue_size: int = 64
    queue_timeout_s: float = 10.0  # realtime requests
    queue_timeout_batch_s: float = 300.0  # batch requests (jobs) may wait longer
    reserved_realtime_slots: int = Field(0, ge=0)  # per engine, kept from batch work
    # with Redis: engines' capacity is shared by every gateway (they front the
    # same endpoints) rather than counted per gateway
    shared_admission: bool = False
    engine_timeout_s: float = 30.0

    # Result cache and single flight (serving/cache.py, serving/flight.py): files
    # under data_dir/cache, or Redis when redis_url is set
    cache_enabled: bool = True
    cache_max_bytes: int = Field(268_435_456, ge=0)  # all entries together
    cache_ttl_s: float = Field(86_400.0, gt=0)  # how long a result is served again
    cache_max_entry_bytes: int = Field(8_388_608, ge=0)  # larger results are not kept

    # Circuit breakers and failover (serving/breaker.py, serving/router.py)
    breaker_failure_rate: float = Field(0.05, ge=0.0, lt=1.0)
    breaker_window_s: float = Field(30.0, gt=0)
    breaker_min_calls: int = Field(20, ge=1)
    breaker_cooldown_s: float = Field(60.0, gt=0)
    breaker_half_open_calls: int = Field(1, ge=1)
    # How often a gateway checks Redis for engines registered elsewhere, in
    # case it missed the change's message (serving/engine_control.py)
    engine_sync_s: float = Field(2.0, gt=0)

    # Workers (`voxgate worker`, worker/server.py): where one listens, the URL
    # gateways reach it at, its heartbeat in Redis, how long it drains.
    worker_host: str = "127.0.0.1"
    worker_port: int = Field(8090, ge=0)  # 0: any free port
    worker_url: str | None = None  # default: http://<host>:<port>
    worker_heartbeat_s: float = Field(1.0, gt=0)  # registration expires after 3
    worker_drain_s: float = Field(60.0, ge=0)
    worker_token: SecretStr | None = None  # bearer token between gateways and workers
    # Freeze the start-up heap out of full GC passes once ready (heap.py);
    # off only to measure what it saves (bench/run.py gc)
    gc_freeze: bool = True
    # TLS between gateways and workers (worker/tls.py): a worker with a
    # certificate and key serves https://; gateways verify workers against
    # worker_tls_ca (a CA bundle, or the workers' self-signed certificate),
    # else the system's trust store.
    worker_tls_cert: Path | None = None
    worker_tls_key: Path | None = None
    worker_tls_ca: Path | None = None

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def blob_path(self) -> Path:
        return (self.blob_dir or self.data_dir / "blobs").expanduser()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'voxgate.db'}"

    @property
    def engine_names(self) -> list[str]:
        return list(self.engines)

    @property
    def default_engine_name(self) -> str:
        if self.default_engine:
            return self.default_engine
        if not self.engines:
            raise ValueError("no engine configured (VOXGATE_ENGINES is empty)")
        return next(iter(self.engines))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Settings from explicit overrides, the environment and an optional TOML
    file (``config_file``, else ``VOXGATE_CONFIG``)."""
    path = config_file or os.environ.get("VOXGATE_CONFIG")
    cls: type[Settings] = Settings
    if path:
        toml = Path(path).expanduser()
        if not toml.is_file():
            raise FileNotFoundError(f"configuration file {toml} does not exist")
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": toml})
        cls = type("Settings", (Settings,), {"model_config": config})
    return cls(**{k: v for k, v in overrides.items() if v is not None})
