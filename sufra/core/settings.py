"""Global settings, read from ``SUFRA_*`` environment variables and overridable by CLI options."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class SufraSettings(BaseSettings):
    """Settings shared by every flow; each flow adds its own typed settings object on top."""

    model_config = SettingsConfigDict(env_prefix="SUFRA_", extra="ignore")

    data_root: str = "./data"
    """Local folder or fsspec URL (``memory://x``, ``s3://bucket/sufra``) holding images, tables and runs."""
    debug: bool = False
    """Show tracebacks instead of one-line errors."""
