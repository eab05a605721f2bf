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
