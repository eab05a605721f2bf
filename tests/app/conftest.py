"""One real Prefect server per test module of the app layer (deployments, schedules)."""

from tests.support.prefect_server import prefect_server  # noqa: F401 - a fixture, shared by name
