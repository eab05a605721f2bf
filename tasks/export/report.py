"""Dataset card (Markdown) and self-contained HTML report of an export (inline SVG charts, base64 thumbnails)."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict

import numpy as np

from sufra.core.catalog import Country
from sufra.core.store import DataRoot

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def bar_chart_svg(labels: list[str], values: list[float], title: str, width: int = 720, bar_px: int = 16) -> str:
    """A horizontal bar chart as inline SVG."""
    top = max(values, default=0) or 1
    rows = []
    label_px = 190
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 24 + n * (bar_px + 4)
        length = (width - label_px - 60) * value / top
        rows.append(f"<text x='{label_px - 6}' y='{y + bar_px - 4}' text-anchor='end' font-size='12'>{html.escape(str(label))}</text>"
                    f"<rect x='{label_px}' y='{y}' width='{length:.1f}' height='{bar_px}' fill='#3b7dd8'/>"
                    f"<text x='{label_px + length + 4:.1f}' y='{y + bar_px - 4}' font-size='11'>{value:g}</text>")
    height = 30 + len(labels) * (bar_px + 4)
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
            f"<text x='4' y='14' font-size='13' font-weight='bold'>{html.escape(title)}</text>{''.join(rows)}</svg>")


def histogram(values: list[float], bins: list[float]) -> tuple[list[str], list[int]]:
    counts, edges = np.histogram(values, bins=bins)
    return [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(counts))], counts.tolist()


def overlay_thumbnail(data: bytes, instances, size_px: int = 220) -> str:
    """The image with each instance's mask tinted and its box drawn, as a JPEG data URI."""
    from PIL import Image, ImageDraw

    from sufra.utils.boxes import xywh_to_xyxy
    from sufra.utils.images import load_rgb

    image = load_rgb(data)
    array = np.asarray(image).astype(np.float32)
    for n, inst in enumerate(instances):
        colour = np.array(PALETTE[n % len(PALETTE)], np.float32)
        mask = inst.mask.to_mask()
        array[mask] = array[mask] * 0.5 + colour * 0.5
    image = Image.fromarray(array.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    boxes_xyxy = xywh_to_xyxy([inst.bbox for inst in instances])
    for n, box in enumerate(boxes_xyxy):
        draw.rectangle(box.tolist(), outline=PALETTE[n % len(PALETTE)], width=max(2, image.width // 150))
    image.thumbnail((size_px, size_px))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def _counts_table(selection) -> tuple[list[str], dict]:
    per = defaultdict(Counter)
    cat_of = {}
    for inst in selection.instances:
        cat_of[inst.image_id] = inst.label if len({c.country for c in selection.categories}) == 1 else f"{inst.country}/{inst.label}"
    for row in selection.images:
        per[cat_of.get(row["image_id"], row["dish"])][row["split"]] += 1
    return sorted(per), per


def render_card(selection, catalogs: list[Country], version: str, name: str, tail: list[dict]) -> str:
    dishes, per = _counts_table(selection)
    lines = [f"# sufra dataset: {name} {version}", "",
             "Fine-grained food images with instance masks, built by the sufra pipeline "
             "(web collection, perceptual deduplication, Grounding DINO + SAM annotation, optional human review).", "",
             "## Counts per dish and split", "", "| dish | train | val | test | total |", "|---|---|---|---|---|"]
    for dish in dishes:
        c = per[dish]
        lines.append(f"| {dish} | {c['train']} | {c['val']} | {c['test']} | {sum(c.values())} |")
    lines += ["", f"Images: {len(selection.images)}; instances: {len(selection.instances)}.", "",
              "## Long tail (images and instances per class)", "", "| class | images | instances | |", "|---|---|---|---|"]
    top = max((r["images"] for r in tail), default=1) or 1
    for r in tail:
        lines.append(f"| {r['category']} | {r['images']} | {r['instances']} | {'█' * max(1, round(20 * r['images'] / top)) if r['images'] else ''} |")
    from sufra.tasks.export.statistics import imbalance_ratio

    lines += ["", f"Imbalance ratio (most / fewest images per present class): {imbalance_ratio(tail)}", "",
              "## Sources and licences", ""]
    lines += [f"- engine `{k}`: {v} images" for k, v in sorted(selection.sources.items())]
    lines += [f"- licence `{k}`: {v} images" for k, v in sorted(selection.licenses.items())]
    lines += ["", "Images come from public web search results and keep their owners' rights; the licence is recorded "
              "only where the engine reports one. Use for research; check each image's licence before redistribution.", "",
              "## Deduplication and review", "",
              f"- near/exact duplicates dropped at curation: {selection.stats['duplicates_dropped']}",
              f"- excluded after review (rejected): {selection.stats['excluded_review_rejected']}",
              f"- excluded, no instance found: {selection.stats['excluded_no_instances']}"]
    lines += [f"- review outcome `{k}`: {v}" for k, v in sorted(selection.review_outcomes.items())]
    lines += ["", "## How it was built", "", f"- catalogs: {', '.join(sorted(c.country for c in catalogs))} "
              f"(hashes {', '.join(c.content_hash() for c in sorted(catalogs, key=lambda c: c.country))})",
              f"- pipeline runs: {len(selection.run_ids)} (ids in the Parquet metadata, manifests under runs/)",
              "- files: images.parquet, instances.parquet (COCO RLE masks), splits.parquet, multilabel.parquet, "
              "instances_{train,val,test}.json (COCO), label_maps/ (FoodSeg103-style PNG + categories.csv), report.html", "",
              "## Known limits", "",
              "- Automatic annotations are not verified unless the review outcome says so; boxes and masks can be wrong.",
              "- Web images are biased towards photogenic, restaurant and blog presentations of each dish.",
              "- Near-duplicate detection is perceptual: heavy edits of the same photo can remain as separate images.",
              "- Category ids are stable across versions as long as catalog files only append dishes.", ""]
    return "\n".join(lines)


def render_report(root: DataRoot, selection, name: str, version: str, tail: list[dict], settings) -> str:
    by_image = defaultdict(list)
    for inst in selection.instances:
        by_image[inst.image_id].append(inst)
    sections = []
    sections.append(bar_chart_svg([r["category"] for r in tail], [r["images"] for r in tail],
                                  "Images per class, sorted (long tail)"))
    per_image = Counter(len(by_image[r["image_id"]]) for r in selection.images)
    sizes = list(range(1, max(per_image, default=1) + 1))
    sections.append(bar_chart_svg([str(k) for k in sizes], [per_image[k] for k in sizes], "Instances per image"))
    bins = [round(x, 1) for x in np.linspace(0, 1, 11)]
    labels, counts = histogram([i.box_score for i in selection.instances], bins)
    sections.append(bar_chart_svg(labels, counts, "Box scores"))
    mask_scores = [i.mask_score for i in selection.instances if i.mask_score is not None]
    if mask_scores:
        labels, counts = histogram(mask_scores, bins)
        sections.append(bar_chart_svg(labels, counts, "Mask scores"))
    outcomes = selection.review_outcomes or Counter({"none": 0})
    sections.append(bar_chart_svg(sorted(outcomes), [outcomes[k] for k in sorted(outcomes)], "Review outcomes"))
    grids = []
    images_by_dish = defaultdict(list)
    for row in selection.images:
        images_by_dish[row["dish"]].append(row)
    for dish in sorted(images_by_dish):
        cells = []
        for row in images_by_dish[dish][: settings.samples_per_dish]:
            uri = overlay_thumbnail(root.read_image_bytes(row["image_id"], row["format"]), by_image[row["image_id"]])
            cells.append(f"<figure><img src='{uri}'><figcaption>{row['split']} · {len(by_image[row['image_id']])} inst.</figcaption></figure>")
        grids.append(f"<h3>{html.escape(dish)}</h3><div class='grid'>{''.join(cells)}</div>")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>sufra report: {html.escape(name)} {html.escape(version)}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} .grid{{display:flex;flex-wrap:wrap;gap:8px}}
figure{{margin:0}} figcaption{{font-size:11px;color:#555}} svg{{display:block;margin:12px 0}}</style></head><body>
<h1>sufra dataset report: {html.escape(name)} {html.escape(version)}</h1>
<p>{len(selection.images)} images, {len(selection.instances)} instances, {len(selection.categories)} categories.</p>
<h2>Statistics</h2>{''.join(sections)}<h2>Samples per dish (masks tinted, boxes drawn)</h2>{''.join(grids)}</body></html>"""
