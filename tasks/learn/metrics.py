"""Classification metrics (scikit-learn): top-1, top-5, macro-F1, per-class precision/recall, confusion matrix
(CSV + matplotlib PNG), and the choice of the evaluated rows of a feature cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sufra.core.errors import SufraError


def split_rows(index: list[dict], wanted: list[str], split: str) -> list[int]:
    """Row numbers of ``index`` in ``split`` whose label is one of ``wanted`` (possibly none)."""
    keep = set(wanted)
    return [n for n, r in enumerate(index) if r.get("split") == split and r.get("label") in keep]


def select_split(index: list[dict], wanted: list[str], split: str) -> list[int]:
    """:func:`split_rows`, raising when there is none (no fallback to other splits: training rows must never be
    evaluated)."""
    rows = split_rows(index, wanted, split)
    if not rows:
        raise SufraError(f"no instance of split '{split}' in the cache (classes: {', '.join(wanted)}); "
                         "choose another split with --split")
    return rows


def split_targets(index: list[dict], rows: list[int], wanted: list[str]) -> np.ndarray:
    """Class indices (into ``wanted``) of the given rows."""
    return np.array([wanted.index(index[n]["label"]) for n in rows], dtype=int)


def classification_metrics(logits: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """``logits`` N x K, ``targets`` N class indices (0..K-1)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    k = len(classes)
    labels = list(range(k))
    logits, targets = np.asarray(logits, dtype=float), np.asarray(targets, dtype=int)
    n = len(targets)
    if n == 0:
        confusion = np.zeros((k, k), dtype=int)
        precision = recall = f1 = np.zeros(k)
        support = np.zeros(k, dtype=int)
        top1 = top5 = macro_f1 = 0.0
    else:
        predicted = logits.argmax(1)
        confusion = confusion_matrix(targets, predicted, labels=labels)
        precision, recall, f1, support = precision_recall_fscore_support(targets, predicted, labels=labels,
                                                                         zero_division=0)
        top1 = float(accuracy_score(targets, predicted))
        # top-5 among K <= 5 classes is always a hit (sklearn warns and wants 1-D scores when K == 2)
        top5 = 1.0 if k <= 5 else float(top_k_accuracy_score(targets, logits, k=5, labels=labels))
        supported = [i for i in labels if support[i] > 0]  # macro-F1 over the classes present in the targets
        macro_f1 = float(f1_score(targets, predicted, labels=supported, average="macro", zero_division=0))
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])} for i, name in enumerate(classes)}
    return {
        "n": int(n),
        "top1": top1,
        "top5": top5,
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion": np.asarray(confusion, dtype=int).tolist(),
        "classes": classes,
    }


def confusion_figure(metrics: dict):
    """A matplotlib figure with two panels (counts, row-normalised) of the confusion matrix, full class names
    as tick labels."""
    from matplotlib.figure import Figure  # a Figure of its own: no pyplot, the caller's backend is left alone

    classes, matrix = metrics["classes"], np.array(metrics["confusion"], dtype=int).reshape(len(metrics["classes"]), -1)
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    k = len(classes)
    side = max(4.0, 0.45 * k + 2.5)
    figure = Figure(figsize=(2 * side + 1, side + 1), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, values, title in ((axes[0], matrix, "counts"), (axes[1], norm, "row-normalised")):
        image = ax.imshow(values, cmap="Blues", vmin=0, vmax=max(values.max(), 1) if values is matrix else 1)
        figure.colorbar(image, ax=ax, shrink=0.8)
        ax.set_title(title)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k), labels=classes, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(k), labels=classes)
        threshold = values.max() / 2 if values.size else 0
        for i in range(k):
            for j in range(k):
                text = str(matrix[i, j]) if values is matrix else f"{norm[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > threshold and values[i, j] > 0 else "black")
    return figure


def write_confusion(metrics: dict, folder: Path) -> tuple[Path, Path]:
    """confusion.csv (rows: true class, columns: predicted) and confusion.png (counts and row-normalised panels)."""
    classes, matrix = metrics["classes"], np.array(metrics["confusion"])
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "confusion.csv"
    lines = ["true\\predicted," + ",".join(classes)] + [f"{c}," + ",".join(map(str, row)) for c, row in zip(classes, matrix, strict=True)]
    csv.write_text("\n".join(lines) + "\n")
    png = folder / "confusion.png"
    confusion_figure(metrics).savefig(png, dpi=100)
    return csv, png
