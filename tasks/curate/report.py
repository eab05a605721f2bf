"""The curate report: counts and a contact sheet of the largest duplicate groups (self-contained HTML)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping

from sufra.core.store import DataRoot


def thumbnail_data_uri(data: bytes, size_px: int = 128) -> str:
    from PIL import Image

    from sufra.utils.images import load_rgb

    image = load_rgb(data)
    image.thumbnail((size_px, size_px), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()


def render_curate_report(root: DataRoot, country: str, counts: Mapping[str, int], groups: list[list[str]],
                         paths: Mapping[str, str], dishes: Mapping[str, str], max_groups: int = 20,
                         max_members: int = 12) -> str:
    """HTML: a counts table and, per group (largest first), the representative then its duplicates."""
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{v}</td></tr>" for k, v in sorted(counts.items()))
    sheets = []
    for group in groups[:max_groups]:
        cells = []
        for n, image_id in enumerate(group[:max_members]):
            path = paths.get(image_id)
            label = html.escape(f"{'REP ' if n == 0 else ''}{dishes.get(image_id, '?')} {image_id[:10]}")
            if path is None:  # an exact duplicate recorded at collect time has no stored file of its own
                cells.append(f"<figure><div class='missing'>same bytes</div><figcaption>{label}</figcaption></figure>")
                continue
            uri = thumbnail_data_uri(root.read_bytes(path))
            cells.append(f"<figure><img src='{uri}'><figcaption>{label}</figcaption></figure>")
        sheets.append(f"<section><h3>group of {len(group)}</h3><div class='row'>{''.join(cells)}</div></section>")
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>sufra curate report: {html.escape(country)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td{{border:1px solid #ccc;padding:4px 10px}}
.row{{display:flex;flex-wrap:wrap;gap:6px}} figure{{margin:0;width:132px}} img{{max-width:128px;max-height:128px}}
figcaption{{font-size:11px}} .missing{{width:128px;height:96px;background:#eee;display:flex;align-items:center;justify-content:center}}</style>
</head><body><h1>Curate report: {html.escape(country)}</h1><table>{rows}</table>
<h2>{min(len(groups), max_groups)} largest duplicate groups</h2>{''.join(sheets) or '<p>no duplicate groups</p>'}</body></html>"""
