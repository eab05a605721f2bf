"""Classification metrics: top-1, top-5, macro-F1, per-class precision/recall, confusion matrix (CSV + PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def classification_metrics(logits: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """``logits`` N x K, ``targets`` N class indices (0..K-1)."""
    k = len(classes)
    predicted = logits.argmax(1)
    top5 = np.argsort(-logits, axis=1)[:, : min(5, k)]
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (targets, predicted), 1)
    per_class = {}
    f1s = []
    for i, name in enumerate(classes):
        tp = confusion[i, i]
        precision = tp / confusion[:, i].sum() if confusion[:, i].sum() else 0.0
        recall = tp / confusion[i].sum() if confusion[i].sum() else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": float(precision), "recall": float(recall), "f1": float(f1), "support": int(confusion[i].sum())}
        if confusion[i].sum():
            f1s.append(f1)
    return {
        "n": int(len(targets)),
        "top1": float((predicted == targets).mean()) if len(targets) else 0.0,
        "top5": float((top5 == targets[:, None]).any(1).mean()) if len(targets) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "classes": classes,
    }


def write_confusion(metrics: dict, folder: Path) -> tuple[Path, Path]:
    """confusion.csv (rows: true class, columns: predicted) and confusion.png (a labelled heat map)."""
    from PIL import Image, ImageDraw

    classes, matrix = metrics["classes"], np.array(metrics["confusion"])
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "confusion.csv"
    lines = ["true\\predicted," + ",".join(classes)] + [f"{c}," + ",".join(map(str, row)) for c, row in zip(classes, matrix, strict=True)]
    csv.write_text("\n".join(lines) + "\n")
    cell, margin = 28, 150
    size = margin + cell * len(classes) + 10
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    for i, name in enumerate(classes):
        draw.text((4, margin + i * cell + 8), name[:22], fill="black")
        draw.text((margin + i * cell + 4, 4 + (i % 2) * 12), name[:4], fill="black")
        for j in range(len(classes)):
            shade = int(255 * (1 - norm[i, j]))
            draw.rectangle([margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1],
                           fill=(shade, shade, 255))
            draw.text((margin + j * cell + 6, margin + i * cell + 8), str(matrix[i, j]), fill="black" if shade > 120 else "white")
    png = folder / "confusion.png"
    image.save(png)
    return csv, png
