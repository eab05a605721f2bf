"""Human review in Label Studio (label-studio-sdk 2.x): push images with pre-annotations, pull reviews back.

Boxes go to Label Studio in percent of the image; masks as Label Studio brush RLE through the SDK's converter
(``label_studio_sdk.converter.brush``); both conversions are ``Detections.to_labelstudio`` / ``from_labelstudio``. Pulled annotations become ``instances`` rows with source ``review`` and
``reviews`` rows. The API key is read from ``LABEL_STUDIO_API_KEY`` (or the Prefect Secret block
``label-studio-api-key``) and never appears in messages. Every remote check runs before anything is written locally.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass

from pydantic import BaseModel, SecretStr
from sufra.schemas.detections import (
    Detections,
    labelstudio_brush_mask,
    labelstudio_brush_rle,
    labelstudio_percent_box,
)
from sufra.schemas.tables import ANNOTATIONS, IMAGES, INSTANCES, REVIEWS, InstanceRecord, ReviewRecord

from sufra.core.catalog import Country
from sufra.core.errors import SufraError
from sufra.core.settings import LabelStudioEnv, sufra_settings
from sufra.core.store import DataRoot, utcnow

DECISIONS = {"accept": "accepted", "reject": "rejected", "wrong dish": "corrected"}


class LabelStudioSettings(BaseModel):
    url: str
    api_key: SecretStr
    image_base_url: str | None = None  # where Label Studio's browser fetches images: a file server on the data root
    local_files_prefix: str | None = None  # or Label Studio local storage: "/data/local-files/?d=<prefix>"
    polygons: bool = False  # add PolygonLabels to the labeling config

    @classmethod
    def from_env(cls) -> LabelStudioSettings:
        env, sufra = LabelStudioEnv(), sufra_settings()
        url = env.url
        key = (env.api_key.get_secret_value() if env.api_key else None) or _secret_block()
        if not url or not key:
            raise SufraError("review needs LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (or the Prefect Secret block "
                             "'label-studio-api-key')")
        return cls(url=url.rstrip("/"), api_key=key, image_base_url=sufra.review_image_base_url,
                   local_files_prefix=sufra.review_local_files_prefix)


def _secret_block() -> str | None:
    try:
        from prefect.blocks.system import Secret

        return Secret.load("label-studio-api-key").get()
    except Exception:  # no block, no API: the environment variable is the way
        return None


def labeling_config(catalog: Country, polygons: bool = False) -> str:
    labels = "".join(f'<Label value="{d.id}"/>' for d in catalog.dishes)
    polygon = f'<PolygonLabels name="polygon" toName="image">{labels}</PolygonLabels>' if polygons else ""
    return (
        '<View><Image name="image" value="$image" zoom="true"/>'
        '<Choices name="decision" toName="image" choice="single" showInline="true">'
        '<Choice value="accept"/><Choice value="reject"/><Choice value="wrong dish"/></Choices>'
        f'<RectangleLabels name="box" toName="image">{labels}</RectangleLabels>'
        f'<BrushLabels name="mask" toName="image">{labels}</BrushLabels>{polygon}</View>'
    )


def _normalise(config: str) -> str:
    return re.sub(r"\s+", "", config or "")


def project_title(country: str, version: str) -> str:
    return f"sufra {country} {version}"


@dataclass
class Client:
    """The SDK client with errors turned into one-line :class:`SufraError` (never showing the key)."""

    settings: LabelStudioSettings

    def __post_init__(self) -> None:
        from label_studio_sdk import LabelStudio

        # a personal access token (JWT) is checked and exchanged by the SDK's constructor; a legacy token is used as is
        self.sdk = self.call("use the API key", LabelStudio, base_url=self.settings.url,
                             api_key=self.settings.api_key.get_secret_value(), timeout=30)

    def call(self, what: str, fn, *args, **kwargs):
        import httpx
        from label_studio_sdk.core.api_error import ApiError

        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            if exc.status_code == 401:
                raise SufraError(f"Label Studio at {self.settings.url} rejected the API key (401) while trying to {what}; "
                                 "check LABEL_STUDIO_API_KEY (a personal access token, or a legacy token with legacy "
                                 "tokens enabled)") from None
            raise SufraError(f"Label Studio answered {exc.status_code} while trying to {what}") from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as exc:
            raise SufraError(f"Label Studio at {self.settings.url} is unreachable ({type(exc).__name__}) while trying "
                             f"to {what}; is the server running?") from None

    def find_project(self, title: str):
        for project in self.call("list projects", lambda: list(self.sdk.projects.list())):
            if project.title == title:
                return project
        return None

    def check_config(self, project, expected: str) -> None:
        full = self.call("read the project", self.sdk.projects.get, id=project.id)
        if _normalise(full.label_config) != _normalise(expected):
            raise SufraError(f"the labeling config of Label Studio project '{project.title}' (id {project.id}) was "
                             "edited by hand; restore it or push to a new version")

    def tasks(self, project_id: int) -> list:
        return self.call("list tasks", lambda: list(self.sdk.tasks.list(project=project_id, fields="all")))


# -- push ------------------------------------------------------------------------------------------------------
# the conversions live with the central type (Detections.to_labelstudio / from_labelstudio); these names stay for callers
percent_box = labelstudio_percent_box
brush_rle = labelstudio_brush_rle
brush_mask = labelstudio_brush_mask


def prediction_result(instances: list[InstanceRecord], width: int, height: int) -> list[dict]:
    """Pre-annotation regions of one image's instances (a box and a brush mask per instance, ids from the
    instance ids): ``Detections.from_records(...).to_labelstudio(...)``."""
    return Detections.from_records(instances).to_labelstudio(width, height)


def image_url(settings: LabelStudioSettings, root: DataRoot, image_id: str, ext: str) -> str:
    relative = f"images/{image_id[:2]}/{image_id}.{ext}"
    if settings.local_files_prefix is not None:
        return f"/data/local-files/?d={settings.local_files_prefix.rstrip('/')}/{relative}"
    if settings.image_base_url:
        return f"{settings.image_base_url.rstrip('/')}/{relative}"
    raise SufraError("set SUFRA_REVIEW_IMAGE_BASE_URL (a file server on the data root) or "
                     "SUFRA_REVIEW_LOCAL_FILES_PREFIX (Label Studio local storage) so Label Studio can show the images")


def select_for_review(root: DataRoot, country: str, which: str) -> list[dict]:
    """Annotated images to push: ``needs_review``, ``all``, or ``sample:N`` (deterministic by image id hash)."""
    annotations = [a for a in root.read_table(ANNOTATIONS, country).to_pylist() if a["status"] != "rejected"]
    if which == "needs_review":
        return [a for a in annotations if a["status"] == "needs_review"]
    if which == "all":
        return annotations
    if which.startswith("sample:") and which[7:].isdigit():
        return sorted(annotations, key=lambda a: hashlib.sha256(a["image_id"].encode()).hexdigest())[: int(which[7:])]
    raise SufraError(f"--which must be needs_review, all or sample:N, got '{which}'")


def push(root: DataRoot, catalog: Country, version: str, settings: LabelStudioSettings, which: str = "needs_review") -> dict:
    """Create the project if needed and one task per image not pushed yet (with predictions)."""
    country = catalog.country
    chosen = select_for_review(root, country, which)
    client = Client(settings)
    config = labeling_config(catalog, settings.polygons)
    title = project_title(country, version)
    project = client.find_project(title)
    if project is None:
        project = client.call("create the project", client.sdk.projects.create, title=title, label_config=config,
                              description=f"sufra review of {catalog.name}, dataset version {version}")
    else:
        client.check_config(project, config)
    existing = {(t.data or {}).get("image_id") for t in client.tasks(project.id)}
    formats = {r["image_id"]: r["format"] for r in root.read_table(IMAGES, country, columns=["image_id", "format"]).to_pylist()}
    by_image: dict[str, list[InstanceRecord]] = {}
    annotation_hash = {a["image_id"]: a["config_hash"] for a in chosen}
    for inst in root.read_records(INSTANCES, country):
        if inst.source == "auto" and annotation_hash.get(inst.image_id) == inst.config_hash:
            by_image.setdefault(inst.image_id, []).append(inst)
    tasks = []
    for a in sorted(chosen, key=lambda a: a["image_id"]):
        if a["image_id"] in existing:
            continue
        instances = sorted(by_image.get(a["image_id"], []), key=lambda i: i.instance_id)
        versions = sorted({v for i in instances for v in i.model_versions.values()})
        tasks.append({
            "data": {"image": image_url(settings, root, a["image_id"], formats[a["image_id"]]), "image_id": a["image_id"],
                     "dish": a["dish"], "status": a["status"]},
            "meta": {"image_id": a["image_id"], "dish": a["dish"]},
            "predictions": [{"model_version": "+".join(versions) or "sufra", "score": min((i.box_score for i in instances), default=0.0),
                             "result": prediction_result(instances, a["width"], a["height"])}],
        })
    if tasks:
        client.call("import tasks", client.sdk.projects.import_tasks, id=project.id, request=tasks)
    return {"project_id": project.id, "pushed": len(tasks), "already_there": len(chosen) - len(tasks)}


# -- pull ------------------------------------------------------------------------------------------------------
def annotation_to_rows(result: list[dict], image_id: str, country: str, default_label: str, width: int, height: int,
                       reviewer: str | None, task_id: int, when: dt.datetime) -> tuple[str, list[InstanceRecord]]:
    """A finished annotation -> (decision, review instances). Regions become instances through
    ``Detections.from_labelstudio`` (a box and a brush sharing a region id are one instance); empty masks are
    dropped; ``bbox`` is the reviewer's box (the mask's box for a lone brush), rounded to 0.01 px."""
    choice = next((r["value"]["choices"][0] for r in result if r.get("from_name") == "decision" and r["value"].get("choices")), None)
    det = Detections.from_labelstudio(result, width, height, default_label)
    det = det[det.mask_areas_px() > 0]
    ids = [hashlib.sha256(f"review:{task_id}:{key}".encode()).hexdigest()[:24] for key in det.data["region_id"]]
    instances = det.to_records(image_id=image_id, country=country, created_at=when, instance_ids=ids, source="review",
                               model_versions={"reviewer": reviewer or "unknown"}, bbox_from="box", bbox_decimals=2)
    decision = DECISIONS.get(choice or "", "corrected")
    if choice == "accept" and not instances:
        decision = "accepted"
    return decision, instances


def pull(root: DataRoot, catalog: Country, version: str, settings: LabelStudioSettings) -> dict:
    """Read finished annotations of the project; append ``reviews`` and review ``instances`` rows for tasks whose
    latest annotation is newer than what the tables hold (a later pull picks up the rest)."""
    country = catalog.country
    client = Client(settings)
    title = project_title(country, version)
    project = client.find_project(title)
    if project is None:
        raise SufraError(f"no Label Studio project '{title}' at {settings.url}; push images for review first")
    client.check_config(project, labeling_config(catalog, settings.polygons))
    tasks = client.tasks(project.id)
    done = {r["image_id"]: r for r in root.read_table(REVIEWS, country).to_pylist()}
    sizes = {a["image_id"]: (a["width"], a["height"], a["dish"]) for a in root.read_table(ANNOTATIONS, country).to_pylist()}
    reviews, instances = [], []
    for task in tasks:
        image_id = (task.data or {}).get("image_id")
        finished = [a for a in (task.annotations or []) if not _get(a, "was_cancelled")]
        if not image_id or not finished or image_id not in sizes:
            continue
        latest = max(finished, key=lambda a: (_get(a, "updated_at") or _get(a, "created_at"), _get(a, "id")))
        when = _as_datetime(_get(latest, "updated_at") or _get(latest, "created_at"))
        previous = done.get(image_id)
        if previous is not None and previous["ls_task_id"] == task.id and previous["reviewed_at"] >= when:
            continue
        width, height, dish = sizes[image_id]
        reviewer = str(_get(latest, "completed_by") or "")
        decision, rows = annotation_to_rows(_get(latest, "result") or [], image_id, country, dish, width, height,
                                            reviewer or None, task.id, when)
        reviews.append(ReviewRecord(image_id=image_id, country=country, decision=decision, reviewer=reviewer or None,
                                    ls_task_id=task.id, reviewed_at=when))
        instances.extend(rows)
    root.write_table(INSTANCES, country, instances, f"review-{version}")
    root.write_table(REVIEWS, country, reviews, f"review-{version}")  # written last: marks the pull done
    return {"project_id": project.id, "tasks": len(tasks), "new_reviews": len(reviews), "review_instances": len(instances),
            **{f"decision_{d}": sum(r.decision == d for r in reviews) for d in ("accepted", "rejected", "corrected")}}


def _get(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _as_datetime(value) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return utcnow()

