"""Settings from the environment: every variable sufra reads goes through these pydantic-settings models (the README
lists them in one table). CLI options override them; each flow adds its own typed settings object on top."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SufraSettings(BaseSettings):
    """``SUFRA_*`` variables (and the API keys of the search engines)."""

    model_config = SettingsConfigDict(env_prefix="SUFRA_", extra="ignore")

    data_root: str = "./data"
    """Local folder or fsspec URL (``memory://x``, ``s3://bucket/sufra``) holding images, tables and runs."""
    country: str | None = None
    """Default ``--country``."""
    debug: bool = False
    """Show tracebacks instead of one-line errors."""
    model_cache: Path = Field(default_factory=lambda: Path.home() / ".cache" / "sufra" / "models")
    """Where downloaded checkpoints are kept."""
    review_image_base_url: str | None = None
    """A file server on the data root that Label Studio's browser fetches images from."""
    review_local_files_prefix: str | None = None
    """Or Label Studio local storage: ``/data/local-files/?d=<prefix>``."""
    flickr_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("FLICKR_API_KEY",
                                                                                        "SUFRA_FLICKR_API_KEY"))
    """Flickr API key (engine ``flickr``); never logged."""
    openverse_token: SecretStr | None = None
    """Openverse access token (``/v1/auth_tokens/token/`` with client credentials): pages of 500 instead of 20;
    without it the engine is anonymous. Never logged."""
    webhook_url: str | None = None
    """Where a failed deployment run posts its final state message (JSON ``{"text": ...}``; Slack-compatible)."""
    gpu_concurrency: int = Field(default=1, ge=1)
    """Task runs tagged ``gpu`` at once across every run on the Prefect server (``sufra deployments --apply``)."""
    engine_concurrency: dict[str, int] = Field(default_factory=lambda: {"commons": 1, "openverse": 1, "bing": 2,
                                                                        "flickr": 2, "baidu": 2})
    """Per web engine: ``engine:<name>``-tagged query tasks at once across all runs (one crawl budget per host;
    MediaWiki asks for one request at a time, Openverse rate-limits anonymous clients; google makes no request)."""
    data_lock_timeout_s: float = Field(default=6 * 3600, gt=0)
    """How long a run waits for another run of the same country on the same data root before it fails."""
    repository: str | None = None
    """Git URL the deployments' ``git_clone`` pull step clones on the worker (``prefect.yaml``)."""
    branch: str = "main"
    """Branch of :attr:`repository` the workers run."""
    demo_port: int = Field(default=8765, ge=1, le=65535)
    """Fixed loopback port of the demo's fake search engine: stable image URLs, so a re-run adds no rows."""


class LabelStudioEnv(BaseSettings):
    """``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` (a personal access or legacy token; never printed)."""

    model_config = SettingsConfigDict(env_prefix="LABEL_STUDIO_", extra="ignore")

    url: str | None = None
    api_key: SecretStr | None = None


def sufra_settings() -> SufraSettings:
    """The environment's settings, read now (tests and the CLI change variables between calls)."""
    return SufraSettings()
