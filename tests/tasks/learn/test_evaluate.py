"""Metrics against a hand-computed table, split selection without fallback, the confusion figure."""

from __future__ import annotations

import numpy as np
import pytest
from sufra.tasks.learn.metrics import classification_metrics, confusion_figure, select_split, write_confusion

from sufra.core.errors import SufraError


def test_metrics_match_a_hand_computed_table():
    classes = ["a", "b", "c"]
    targets = np.array([0, 0, 1, 1, 2, 2])
    predicted = [0, 1, 1, 1, 0, 2]  # confusion rows=true: a:[1,1,0] b:[0,2,0] c:[1,0,1]
    logits = np.full((6, 3), 0.0)
    logits[np.arange(6), predicted] = 1.0
    m = classification_metrics(logits, targets, classes)
    assert m["n"] == 6 and m["top1"] == pytest.approx(4 / 6) and m["top5"] == 1.0
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # a: P=1/2 R=1/2 F=1/2; b: P=2/3 R=1 F=0.8; c: P=1 R=1/2 F=2/3
    expected = {"a": (0.5, 0.5, 0.5), "b": (2 / 3, 1.0, 0.8), "c": (1.0, 0.5, 2 / 3)}
    for name, (p, r, f) in expected.items():
        pc = m["per_class"][name]
        assert (pc["precision"], pc["recall"], pc["f1"], pc["support"]) == pytest.approx((p, r, f, 2))
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_macro_f1_ignores_classes_without_support():
    logits = np.eye(3)[[0, 0, 1]]
    m = classification_metrics(logits, np.array([0, 0, 1]), ["a", "b", "c"])
    assert m["per_class"]["c"]["support"] == 0 and m["macro_f1"] == pytest.approx(1.0)


INDEX = [{"split": "train", "label": "a"}, {"split": "train", "label": "b"}, {"split": "val", "label": "a"},
         {"split": "test", "label": "b"}, {"split": "test", "label": "z"}]


def test_select_split_never_falls_back():
    assert select_split(INDEX, ["a", "b"], "test") == [3]
    assert select_split(INDEX, ["a", "b"], "val") == [2]
    with pytest.raises(SufraError, match=r"split 'test'.*classes: a"):
        select_split(INDEX, ["a"], "test")  # old behaviour: every instance, training rows included


def test_write_confusion_png_has_full_class_names(tmp_path):
    classes = ["ful_medames_with_tahini", "koshari_with_crispy_onions", "molokhia_with_rabbit_stew"]
    m = classification_metrics(np.eye(3)[[0, 1, 2, 0]], np.array([0, 1, 2, 1]), classes)
    csv, png = write_confusion(m, tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and csv.read_text().startswith("true\\predicted,")
    figure = confusion_figure(m)
    assert len(figure.axes) >= 2
    for ax in figure.axes[:2]:
        assert [t.get_text() for t in ax.get_xticklabels()] == classes
        assert [t.get_text() for t in ax.get_yticklabels()] == classes
        assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"


def write_cache(folder, splits: list[str], labels: list[str], channels: int = 8, roi_px: int = 7, seed: int = 0):
    """A feature cache as ``extract_features`` writes it: one safetensors shard (F N x C x R x R float16, M and D
    N x 1 x R x R, S N x 8) and index.jsonl rows; each label gets its own feature offset so a head can learn it."""
    import json

    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    n = len(splits)
    target = torch.tensor([sorted(set(labels)).index(label) for label in labels], dtype=torch.float32)
    features = torch.randn(n, channels, roi_px, roi_px, generator=generator) + 3 * target[:, None, None, None]
    save_file({"F": features.to(torch.float16).contiguous(), "M": torch.ones(n, 1, roi_px, roi_px),
               "D": torch.rand(n, 1, roi_px, roi_px, generator=generator), "S": torch.rand(n, 8, generator=generator)},
              str(folder / "shard-00000.safetensors"))
    rows = [{"instance_id": f"i{k}", "image_id": f"m{k}", "label": label, "split": split, "shard": "shard-00000.safetensors",
             "row": k} for k, (split, label) in enumerate(zip(splits, labels, strict=True))]
    (folder / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def trained(tmp_path):
    """A head trained on a cache whose instances are all in the training split (no val, no test)."""
    from sufra.tasks.learn.stages import train_stage
    from sufra.tasks.learn.train import TrainSettings

    from sufra.core.store import DataRoot

    cache = tmp_path / "data" / "features" / "k"
    cache.mkdir(parents=True)
    write_cache(cache, ["train"] * 12, ["koshari", "mahshi"] * 6)
    root = DataRoot(tmp_path / "data")
    result = train_stage(root, str(cache), TrainSettings(epochs=2, batch_size=4, mlp_hidden=16, geometry_dim=8), "t1")
    assert result.counts["classes"] == ["koshari", "mahshi"] and len(result.history) == 2
    return root, result.checkpoint, str(cache)


@pytest.mark.parametrize("split", ["test", "val"])
def test_evaluate_stage_refuses_a_split_without_instances(trained, split):
    """The old flow scored every instance (training rows included) when the split was empty."""
    from sufra.tasks.learn.stages import EvaluateSettings, evaluate_stage

    root, checkpoint, cache = trained
    with pytest.raises(SufraError, match=rf"no instance of split '{split}'"):
        evaluate_stage(root, checkpoint, cache, EvaluateSettings(split=split))
    result = evaluate_stage(root, checkpoint, cache, EvaluateSettings(split="train"))  # asked for: allowed
    assert result.metrics["n"] == 12 and result.folder.name == "eval-all-train"


def test_evaluate_stage_names_classes_the_head_lacks(trained):
    from sufra.tasks.learn.stages import EvaluateSettings, evaluate_stage

    root, checkpoint, cache = trained
    with pytest.raises(SufraError, match=r"not trained on ful_medames, taameya, molokhia \(benchmark set egypt5\)"):
        evaluate_stage(root, checkpoint, cache, EvaluateSettings(benchmark_set="egypt5", split="train"))
    with pytest.raises(SufraError, match="unknown benchmark set 'nope'; the catalog defines .*egypt5"):
        evaluate_stage(root, checkpoint, cache, EvaluateSettings(benchmark_set="nope", split="train"))


def test_evaluate_flow_fails_its_run_on_an_empty_split(trained, prefect_harness):
    import json

    from sufra.flows.evaluate import evaluate

    root, checkpoint, cache = trained
    with pytest.raises(SufraError, match="no instance of split 'test'"):
        evaluate(checkpoint=checkpoint, cache_folder=cache, split="test", data_root=root.url)
    manifests = [json.loads(p.read_bytes()) for p in (root.working_dir("runs")).glob("*-evaluate-*.json")]
    assert [m["status"] for m in manifests] == ["failed"] and "no instance of split 'test'" in manifests[0]["error"]
    assert not list((root.working_dir("checkpoints") / "t1").glob("eval-*"))  # no metrics written
