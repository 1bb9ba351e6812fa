"""Process settings: command-line flags override SEAWATCH_* environment variables, which
override a settings file (YAML), which overrides these defaults. Policy (what to detect,
how long to keep) lives in the policy bundle, not here; settings say where and who."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEAWATCH_", extra="forbid")

    ship_id: str = Field(default="MV-DEMO", pattern=r"^[A-Za-z0-9_\-]+$")
    data_dir: Path = Path("data/ship")
    policy_dir: Path | None = None
    host: str = "127.0.0.1"
    http_port: int = Field(default=8470, ge=0, le=65535)
    syslog_port: int = Field(default=5514, ge=0, le=65535)
    nats_url: str | None = None  # a NATS server to take input from (ingest subject)
    hub_leaf_url: str | None = None  # e.g. nats-leaf://hub.example:7422; None = no uplink
    ship_secret: SecretStr | None = None  # this ship's leaf credential, from the hub
    sync_nats_port: int = Field(default=0, ge=0, le=65535)  # own leaf server, on loopback
    insight: bool = True  # explain incidents with the local LLM (policy feature llm_insight)
    llm_url: str | None = None  # OpenAI-compatible API root incl. /v1 instead of the GGUF
    llm_model: str = ""  # the model name that endpoint expects
    log_level: str = "INFO"
    checkpoint_s: float = Field(default=60.0, gt=0)
    retention_check_s: float = Field(default=3600.0, gt=0)


class HubSettings(BaseSettings):
    """The shore hub: embedded defaults (own nats-server, chdb, Qdrant Edge) unless URLs
    of production services are given."""

    model_config = SettingsConfigDict(env_prefix="SEAWATCH_HUB_", extra="forbid")

    data_dir: Path = Path("data/hub")
    policy_dir: Path | None = None
    host: str = "127.0.0.1"
    http_port: int = Field(default=8480, ge=0, le=65535)
    nats_port: int = Field(default=0, ge=0, le=65535)
    # an existing hub NATS instead of starting one: a URL, or the members of a cluster as
    # a comma-separated list (nats://a:4222,nats://b:4222,nats://c:4222)
    nats_url: str | None = None
    # copies of each hub stream (FLEET_UP, FLEET_DOWN) and of the ingest consumer across the
    # cluster's members: 3 survives the loss of one member; more than 1 needs a cluster (the
    # hub's own nats-server is one node, and JetStream refuses the streams then)
    stream_replicas: int = Field(default=1, ge=1, le=5)
    leaf_port: int = Field(default=7422, ge=0, le=65535)  # where ship leaf nodes connect
    clickhouse_url: str | None = None  # a ClickHouse server instead of embedded chdb
    clickhouse_database: str = "seawatch"
    clickhouse_path: Path | None = None  # embedded chdb data (default: data_dir/clickhouse)
    qdrant_url: str | None = None  # a Qdrant server instead of Qdrant Edge in process
    embeddings_url: str | None = None  # OpenAI-compatible API root incl. /v1 (…/v1/embeddings)
    workers: int = Field(default=2, ge=1, le=64)
    memory: bool = True  # embed incidents into Qdrant
    log_level: str = "INFO"
    live_buffer: int = Field(default=256, ge=1)
    llm_url: str | None = None  # OpenAI-compatible API root incl. /v1 for /ask
    llm_model: str = ""  # the model name that endpoint expects

    @property
    def nats_servers(self) -> list[str]:
        """nats_url split into the server URLs the client tries in turn."""
        return [u.strip() for u in (self.nats_url or "").split(",") if u.strip()]


S = TypeVar("S", bound=BaseSettings)


def load_settings(cls: type[S], file: Path | None = None, **overrides: Any) -> S:
    """Defaults < settings file (YAML) < SEAWATCH_* environment < explicit overrides (flags)."""
    values: dict[str, Any] = {}
    if file is not None:
        loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{file}: settings file must be a mapping")
        values.update(loaded)
    values.update(cls().model_dump(exclude_unset=True))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)
