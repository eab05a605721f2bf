"""review: push images (with boxes and masks as pre-annotations) to Label Studio, pull finished reviews back."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from sufra.flows.common import run_manifest, table_artifact
from sufra.tasks.review.labelstudio import LabelStudioSettings, pull, push

from sufra.core.catalog import load_country
from sufra.core.store import DataRoot


@task(name="label-studio-push", retries=2, retry_delay_seconds=[5, 20],
      retry_condition_fn=lambda t, r, s: "unreachable" in str(s.message or ""))
def push_task(data_root: str, country: str, version: str, which: str) -> dict:
    return push(DataRoot(data_root), load_country(country), version, LabelStudioSettings.from_env(), which)


@task(name="label-studio-pull", retries=2, retry_delay_seconds=[5, 20],
      retry_condition_fn=lambda t, r, s: "unreachable" in str(s.message or ""))
def pull_task(data_root: str, country: str, version: str) -> dict:
    return pull(DataRoot(data_root), load_country(country), version, LabelStudioSettings.from_env())


@flow(name="push-for-review", log_prints=True)
def push_for_review(country: str, version: str, data_root: str = "./data", which: str = "needs_review") -> dict:
    """One Label Studio project per country and version; a re-push never duplicates a task."""
    root = DataRoot(data_root)
    with run_manifest(root, "push-for-review", {"country": country, "version": version, "which": which}) as manifest:
        manifest.counts = push_task(data_root, country, version, which)
        table_artifact(f"review-push-{country}".replace("_", "-"), [manifest.counts], "Label Studio push")
        get_run_logger().info("pushed: %s", manifest.counts)
    return manifest.counts


@flow(name="pull-reviews", log_prints=True)
def pull_reviews(country: str, version: str, data_root: str = "./data") -> dict:
    """Finished annotations -> review instances and reviews rows (reviewer edits win in the export)."""
    root = DataRoot(data_root)
    with run_manifest(root, "pull-reviews", {"country": country, "version": version}) as manifest:
        manifest.counts = pull_task(data_root, country, version)
        table_artifact(f"review-pull-{country}".replace("_", "-"), [manifest.counts], "Label Studio pull")
        get_run_logger().info("pulled: %s", manifest.counts)
    return manifest.counts
