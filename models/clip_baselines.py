"""CLIP baselines: zero-shot with prompt ensembling, and Hybrid CLIP (a general Food-101 head plus a specialist
linear probe on CLIP embeddings of the specialist classes, used when its confidence exceeds tau)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel

from sufra.core.errors import ModelUnavailableError

TEMPLATES = (
    "a photo of {}, a type of food.",
    "a photo of {}.",
    "a close-up photo of {}.",
    "a photo of a plate of {}.",
    "a photo of {}, a traditional dish.",
)


class ClipSpec(BaseModel):
    model: str = "ViT-B-32"  # open_clip architecture name
    pretrained: str | None = "openai"  # open_clip tag or a local checkpoint path; None: random (tests)


@dataclass
class ClipModel:
    """An open_clip model with its tokenizer and eval transform; embeddings are L2-normalised."""

    model: torch.nn.Module
    tokenizer: object
    preprocess: object
    name: str

    @classmethod
    def load(cls, spec: ClipSpec, device: str = "cpu") -> ClipModel:
        """Built once per process for the same spec and device (see :func:`models.weights.load_once`)."""
        import open_clip
        from sufra.models.weights import load_once

        def build() -> ClipModel:
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(spec.model, pretrained=spec.pretrained,
                                                                             device=device)
            except Exception as exc:
                raise ModelUnavailableError(f"cannot load CLIP {spec.model}/{spec.pretrained} ({type(exc).__name__}); "
                                            "download the weights where there is internet or pass a checkpoint path") from None
            return cls(model.eval(), open_clip.get_tokenizer(spec.model), preprocess, f"{spec.model}:{spec.pretrained}")

        return load_once(f"clip:{spec.model_dump_json()}:{device}", build)

    def encode_images(self, images: list) -> torch.Tensor:
        with torch.no_grad():  # not inference_mode: the embeddings train the probe
            x = torch.stack([self.preprocess(im) for im in images])
            return torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1)

    def class_embeddings(self, class_names: list[str], templates: tuple[str, ...] = TEMPLATES) -> torch.Tensor:
        """K x D: per class the normalised mean of its normalised template embeddings (prompt ensembling)."""
        out = []
        with torch.no_grad():  # not inference_mode: the embeddings train the probe
            for name in class_names:
                tokens = self.tokenizer([t.format(name) for t in templates])
                emb = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)
                out.append(torch.nn.functional.normalize(emb.mean(0), dim=-1))
        return torch.stack(out)


def zero_shot_logits(image_embeddings: torch.Tensor, class_embeddings: torch.Tensor, scale: float = 100.0) -> torch.Tensor:
    return scale * image_embeddings @ class_embeddings.T


def train_linear_probe(embeddings: torch.Tensor, targets: torch.Tensor, n_classes: int, epochs: int = 200,
                       lr: float = 1e-2, weight_decay: float = 1e-4, seed: int = 0) -> torch.nn.Linear:
    """Multinomial logistic regression on CLIP embeddings (full batch AdamW)."""
    torch.manual_seed(seed)
    probe = torch.nn.Linear(embeddings.shape[1], n_classes)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = torch.nn.functional.cross_entropy(probe(embeddings), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return probe.eval()


def route(general_labels: list[str], specialist_probs: np.ndarray, specialist_classes: list[str], tau: float) -> list[str]:
    """Hybrid rule: the specialist's class when its top probability exceeds ``tau``, else the general head's."""
    best = specialist_probs.argmax(1)
    confident = specialist_probs.max(1) > tau
    return [specialist_classes[b] if c else g for g, b, c in zip(general_labels, best, confident, strict=True)]


def choose_tau(general_labels: list[str], specialist_probs: np.ndarray, specialist_classes: list[str],
               truth: list[str], grid: np.ndarray | None = None) -> tuple[float, float]:
    """The tau of ``grid`` with the best validation accuracy (ties: the smallest tau). Returns (tau, accuracy)."""
    grid = np.linspace(0.0, 1.0, 101) if grid is None else grid
    best_tau, best_acc = float(grid[0]), -1.0
    for tau in grid:
        predicted = route(general_labels, specialist_probs, specialist_classes, float(tau))
        accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
        if accuracy > best_acc:
            best_tau, best_acc = float(tau), accuracy
    return best_tau, best_acc
