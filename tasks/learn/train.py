"""Train the fusion head from cached tensors: cross-entropy, AdamW, cosine or step schedule, weight decay, early
stopping on validation top-1, seed-deterministic; the best checkpoint and per-epoch metrics go to ``out_dir``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel
from sufra.models.fusion import InstanceAwareFusionHead
from torch import nn


class TrainSettings(BaseModel):
    epochs: int = 40
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "step"] = "cosine"
    step_size: int = 10
    step_gamma: float = 0.1
    patience: int = 8  # epochs without a better validation top-1 before stopping
    seed: int = 0
    use_depth: bool = True
    use_mask: bool = True
    use_film: bool = True
    use_stats: bool = True
    geometry_dim: int = 64
    mlp_hidden: int = 256
    dropout: float = 0.2
    classes: list[str] | None = None  # restrict to these labels (a benchmark set); default: every label


def _batches(n: int, size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    return list(order.split(size))


def logits_of(model: nn.Module, tensors: dict[str, torch.Tensor], rows: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    out = []
    with torch.inference_mode():
        for chunk in rows.split(batch_size):
            out.append(model(tensors["F"][chunk], tensors["M"][chunk], tensors["D"][chunk], tensors["S"][chunk]))
    return torch.cat(out) if out else torch.empty(0)


def select_rows(index: list[dict], classes: list[str], split: str) -> tuple[torch.Tensor, torch.Tensor]:
    position = {c: i for i, c in enumerate(classes)}
    rows = [n for n, r in enumerate(index) if r["split"] == split and r["label"] in position]
    targets = [position[index[n]["label"]] for n in rows]
    return torch.tensor(rows, dtype=torch.long), torch.tensor(targets, dtype=torch.long)


def build_head(channels: int, n_classes: int, settings: TrainSettings) -> InstanceAwareFusionHead:
    return InstanceAwareFusionHead(channels, n_classes, geometry_dim=settings.geometry_dim, mlp_hidden=settings.mlp_hidden,
                                   dropout=settings.dropout, use_depth=settings.use_depth, use_mask=settings.use_mask,
                                   use_film=settings.use_film, use_stats=settings.use_stats)


def train_head(tensors: dict[str, torch.Tensor], index: list[dict], settings: TrainSettings, out_dir: Path,
               on_epoch: Callable[[dict], None] | None = None, features_config: dict | None = None) -> dict:
    """Returns {"best_val_top1", "epochs_run", "checkpoint", "classes"}; writes best.pt and metrics.json.

    ``features_config`` (the cache's config.json) is stored in the checkpoint so prediction rebuilds the same
    extractors."""
    from sufra.core.errors import SufraError

    torch.manual_seed(settings.seed)
    classes = settings.classes or sorted({r["label"] for r in index})
    train_rows, train_y = select_rows(index, classes, "train")
    val_rows, val_y = select_rows(index, classes, "val")
    if len(train_rows) == 0:
        raise SufraError("no training instances in the cache for these classes (check the export's splits)")
    if len(val_rows) == 0:
        val_rows, val_y = train_rows, train_y  # tiny datasets: select on train (said in metrics.json)
    model = build_head(tensors["F"].shape[1], len(classes), settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs) if settings.schedule == "cosine"
                 else torch.optim.lr_scheduler.StepLR(optimizer, settings.step_size, settings.step_gamma))
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(settings.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    history, best, stale = [], -1.0, 0
    for epoch in range(settings.epochs):
        model.train()
        total = 0.0
        for batch in _batches(len(train_rows), settings.batch_size, generator):
            rows = train_rows[batch]
            if len(rows) < 2:  # BatchNorm needs two samples
                continue
            logits = model(tensors["F"][rows], tensors["M"][rows], tensors["D"][rows], tensors["S"][rows])
            loss = loss_fn(logits, train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        scheduler.step()
        val_top1 = float((logits_of(model, tensors, val_rows).argmax(1) == val_y).float().mean())
        record = {"epoch": epoch + 1, "train_loss": total / len(train_rows), "val_top1": val_top1,
                  "lr": optimizer.param_groups[0]["lr"]}
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if val_top1 > best:
            best, stale = val_top1, 0
            torch.save({"state_dict": model.state_dict(), "config": model.config, "classes": classes,
                        "settings": settings.model_dump(), "features": features_config or {}}, out_dir / "best.pt")
        else:
            stale += 1
            if stale >= settings.patience:
                break
    (out_dir / "metrics.json").write_text(json.dumps({"history": history, "best_val_top1": best, "classes": classes,
                                                      "validated_on": "val" if len(select_rows(index, classes, "val")[0]) else "train"}, indent=1))
    return {"best_val_top1": best, "epochs_run": len(history), "checkpoint": str(out_dir / "best.pt"), "classes": classes}


def load_head(path: str | Path) -> tuple[InstanceAwareFusionHead, list[str]]:
    from sufra.core.errors import SufraError

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise SufraError(f"checkpoint '{path}' does not exist") from None
    model = InstanceAwareFusionHead(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint["classes"]
