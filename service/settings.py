"""Service settings, read from the environment (prefix TRIAGE_) in one place."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def cpu_count() -> int:
    # The CPUs this process may run on (a container or taskset may allow fewer than the machine has).
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_file=".env", extra="ignore")

    # The state of one installation (database with the API keys, default model, registry):
    # ./var of the directory the command starts in, never the install location, which
    # belongs to pip and is replaced on upgrade. Every path setting below defaults under it.
    home: Path = Path("var")
    database_url: str = Field(default_factory=lambda data: f"sqlite:///{data['home'] / 'triage.db'}")
    model_dir: Path = Field(default_factory=lambda data: data["home"] / "models" / "default")
    max_body_chars: int = 20_000
    max_batch: int = 100
    max_request_bytes: int = 2_000_000
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # uvicorn worker processes of `triage serve`. One process runs Python on one core at a
    # time (the model is CPU-bound), so the default is one per core. Each holds its own model.
    workers: int = Field(default_factory=cpu_count, ge=1, le=64)
    # While the database is down: how often to try migrating it again, and how long a key
    # last verified against it stays usable (no key can be revoked then, but a key revoked
    # just before the outage keeps working this long).
    database_retry_seconds: float = 5.0
    offline_key_seconds: float = 900.0
    # How long an API key verified against the database is taken again without asking it:
    # a key revoked with `triage keys revoke` is refused at most this long afterwards. 0
    # asks the database on every request.
    key_check_seconds: float = Field(default=5.0, ge=0)
    # The model registry (REGISTRY/registry.json naming the champion, REGISTRY/models/<version>/)
    # that `triage retrain` and `triage models` use by default: once it names a champion, the
    # champion is served instead of model_dir and a promotion is picked up within
    # registry_poll_seconds, without a restart.
    registry_dir: Path = Field(default_factory=lambda data: data["home"] / "registry")
    registry_poll_seconds: float = 5.0
    # Statutory time limits of the 信访工作条例, in calendar days from received_at: decide
    # whether to accept, conclude, and the extension a conclusion may get.
    accept_days: int = Field(default=15, ge=1)
    conclude_days: int = Field(default=60, ge=1)
    extension_days: int = Field(default=30, ge=0)
    # The petition office's target for a queued item: reviewed within this many hours (same day).
    review_target_hours: float = Field(default=24.0, gt=0)
    # Web pages: how long a sign-in lasts, and the key signing session cookies. Unset, `triage
    # serve` makes a random one per run (its workers share it; a restart signs everyone out).
    session_seconds: int = Field(default=8 * 3600, ge=1)
    session_secret: str | None = None
    # Same-matter linking (model/matter.py): petitions received this many days before a new one
    # are looked up; a group of emerging_min_size linked petitions within emerging_days is reviewed.
    similar_window_days: float = Field(365.0, gt=0)
    link_threshold: float = Field(0.5, gt=0, le=1)
    emerging_min_size: int = Field(3, ge=2)
    emerging_days: float = Field(14.0, gt=0)
    # Without a registry, the model in service is a row of the database (set by POST
    # /v1/model/reload); every worker checks it this often and follows it.
    model_poll_seconds: float = Field(default=2.0, gt=0)
    # Reload accepts only model directories under this root (a relative model_dir is taken from here).
    model_root: Path = Field(default_factory=lambda data: data["home"] / "models")
    # The key artifacts are signed with (model/artifact.py): the key itself, or the file
    # holding it, made owner-only by the first training run.
    signing_key: SecretStr | None = None
    signing_key_file: Path = Field(default_factory=lambda data: data["home"] / "signing.key")
    # Logging of the service's and uvicorn's messages: a level name, and one JSON object
    # per line (with a UTC timestamp) instead of text.
    log_level: str = Field(default="INFO", pattern=r"^(?i:debug|info|warning|error|critical)$")
    log_json: bool = False

    @field_validator("home")
    @classmethod
    def _absolute(cls, home: Path) -> Path:
        # Fixed when read: worker processes and log lines name the same directory.
        return home.expanduser().absolute()


@lru_cache
def get_settings() -> Settings:
    return Settings()
