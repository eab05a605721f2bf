"""Run the CLIP baselines on an export: zero-shot over a benchmark set, and Hybrid CLIP (general Food-101 head +
specialist linear probe on the benchmark set's classes, tau chosen on the validation split)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from sufra.models.clip_baselines import ClipModel, choose_tau, route, train_linear_probe, zero_shot_logits
from sufra.tasks.learn.metrics import classification_metrics

from sufra.core.catalog import load_catalog


def dish_names(dish_ids: list[str]) -> dict[str, str]:
    """English names for CLIP prompts, looked up across the catalog."""
    names = {}
    for country in load_catalog().values():
        for dish in country.dishes:
            names.setdefault(dish.id, dish.names["en"])
    return {d: names.get(d, d.replace("_", " ")) for d in dish_ids}


def export_images(export: Path) -> list[dict]:
    """image_id, dish, split and path of every exported image."""
    images = pq.read_table(export / "images.parquet").to_pylist()
    splits = {r["image_id"]: r["split"] for r in pq.read_table(export / "splits.parquet").to_pylist()}
    return [{"image_id": r["image_id"], "dish": r["dish"], "split": splits[r["image_id"]],
             "path": export / "images" / f"{r['image_id']}.{r['format']}"} for r in images]


def run_baselines(export: Path, clip: ClipModel, specialist: list[str], general: list[str], batch_size: int = 32) -> dict:
    from sufra.utils.images import load_rgb

    rows = [r for r in export_images(export) if r["dish"] in specialist]
    embeddings = []
    for start in range(0, len(rows), batch_size):
        embeddings.append(clip.encode_images([load_rgb(r["path"].read_bytes()) for r in rows[start : start + batch_size]]))
    emb = torch.cat(embeddings) if embeddings else torch.empty(0)
    truth = np.array([specialist.index(r["dish"]) for r in rows])
    split = np.array([r["split"] for r in rows])
    names = dish_names(specialist + general)
    spec_text = clip.class_embeddings([names[d] for d in specialist])
    general_text = clip.class_embeddings([names[d] for d in general])
    test = split == "test" if (split == "test").any() else np.ones(len(rows), bool)
    zero_shot = classification_metrics(zero_shot_logits(emb[test], spec_text).numpy(), truth[test], specialist)
    train = split == "train"
    val = split == "val" if (split == "val").any() else train
    probe = train_linear_probe(emb[train], torch.from_numpy(truth[train]), len(specialist))
    with torch.no_grad():
        probs = torch.softmax(probe(emb), dim=1).numpy()
    general_pred = [general[i] for i in zero_shot_logits(emb, general_text).argmax(1).tolist()]
    truth_names = [specialist[t] for t in truth]
    tau, val_accuracy = choose_tau([general_pred[i] for i in np.nonzero(val)[0]], probs[val], specialist,
                                   [truth_names[i] for i in np.nonzero(val)[0]])
    routed = route([general_pred[i] for i in np.nonzero(test)[0]], probs[test], specialist, tau)
    labels = specialist + [g for g in general if g not in specialist]
    onehot = np.zeros((int(test.sum()), len(labels)))
    onehot[np.arange(len(routed)), [labels.index(p) for p in routed]] = 1.0
    hybrid = classification_metrics(onehot, np.array([labels.index(truth_names[i]) for i in np.nonzero(test)[0]]), labels)
    return {"model": clip.name, "n_test": int(test.sum()), "zero_shot": {k: zero_shot[k] for k in ("top1", "top5", "macro_f1")},
            "hybrid": {"top1": hybrid["top1"], "tau": tau, "val_accuracy": val_accuracy,
                       "specialist_share": float(np.mean([p in specialist for p in routed])) if routed else 0.0}}
