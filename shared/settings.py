"""Process settings: command-line flags override SEAWATCH_* environment variables, which
override a settings file (YAML), which overrides these defaults. Policy (what to detect,
how long to keep) lives in the policy bundle, not here; settings say where and who."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SEAWATCH_", extra="forbid")

    ship_id: str = Field(default="MV-DEMO", pattern=r"^[A-Za-z0-9_\-]+$")
    data_dir: Path = Path("data/ship")
    policy_dir: Path | None = None
    host: str = "127.0.0.1"
    http_port: int = Field(default=8470, ge=0, le=65535)
    syslog_port: int = Field(default=5514, ge=0, le=65535)
    nats_url: str | None = None
    log_level: str = "INFO"
    checkpoint_s: float = Field(default=60.0, gt=0)
    retention_check_s: float = Field(default=3600.0, gt=0)

    @classmethod
    def load(cls, file: Path | None = None, **overrides: Any) -> AgentSettings:
        values: dict[str, Any] = {}
        if file is not None:
            loaded = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{file}: settings file must be a mapping")
            values.update(loaded)
        env = cls()  # environment and defaults
        merged = {**values, **env.model_dump(exclude_unset=True)}
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**merged)
