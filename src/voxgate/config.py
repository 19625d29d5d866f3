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

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "voxgate"


class EngineConfig(BaseModel):
    """One engine instance: its kind (plugin) and kind-specific options."""

    kind: str
    options: dict[str, Any] = Field(default_factory=dict)
    queue_size: int | None = None  # overrides Settings.queue_size for this engine
    queue_timeout_s: float | None = None
    timeout_s: float | None = None  # overrides Settings.engine_timeout_s


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
    # h11, not httptools: httptools drops the body of any request carrying
    # "Upgrade: h2c", which every JDK HttpClient sends over plain HTTP
    # (uvicorn issue #2722). Java backends are voxgate's main callers.
    http_implementation: Literal["h11", "httptools"] = "h11"

    # gRPC (the official CosyVoice service, for drop-in migration); off unless set
    grpc_port: int | None = None
    grpc_host: str | None = None  # defaults to host

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

    # Text
    max_input_chars: int = 4096
    first_segment_chars: int = 60

    # Audio
    openai_sample_rate: int = 24000
    encode_threads: int = 0  # 0: one per CPU core

    # Admission
    queue_size: int = 64
    queue_timeout_s: float = 10.0
    engine_timeout_s: float = 30.0

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

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
