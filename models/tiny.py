"""Tiny, randomly initialised models saved to a folder and loaded back through the public loaders.

For tests and the offline demo (``sufra demo``): the real code paths run, in well under a second per image on CPU.
Their outputs are meaningless: never use them for a dataset.
"""

from __future__ import annotations

from pathlib import Path

from sufra.models.detectors import DetectorSpec
from sufra.models.segmenters import SegmenterSpec

BASE_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]


def word_tokenizer(folder: Path, words: list[str]):
    """A BERT tokenizer whose vocabulary is the special tokens plus every word of ``words`` (no download)."""
    from transformers import BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = BASE_VOCAB + sorted({w.lower() for phrase in words for w in phrase.replace(".", " ").split()} - set(BASE_VOCAB))
    (folder / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    return BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)


def save_tiny_grounding_dino(folder: Path, words: list[str], seed: int = 0) -> DetectorSpec:
    """A Grounding DINO with a 32-wide Swin, 1 encoder / 2 decoder layers and a local word-level BERT vocab."""
    import torch
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    folder = Path(folder)
    tokenizer = word_tokenizer(folder, words)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 160}), tokenizer=tokenizer)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
                                   out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, num_queries=30,
        encoder_attention_heads=2, decoder_attention_heads=2, max_text_len=64, num_feature_levels=4,
    )
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return DetectorSpec(backend="transformers", model=str(folder), box_threshold=0.0, text_threshold=0.0)


GROUNDINGDINO_PACKAGE_TINY = """# small random Grounding DINO for the groundingdino package (tests only); keys as in GroundingDINO_SwinT_OGC.py
# (hidden_dim stays 256: the package hard-codes 256 text position features)
batch_size = 1
modelname = "groundingdino"
backbone = "swin_T_224_1k"
position_embedding = "sine"
pe_temperatureH = 20
pe_temperatureW = 20
return_interm_indices = [1, 2, 3]
backbone_freeze_keywords = None
enc_layers = 1
dec_layers = 2
pre_norm = False
dim_feedforward = 256
hidden_dim = 256
dropout = 0.0
nheads = 8
num_queries = 30
query_dim = 4
num_patterns = 0
num_feature_levels = 4
enc_n_points = 4
dec_n_points = 4
two_stage_type = "standard"
two_stage_bbox_embed_share = False
two_stage_class_embed_share = False
transformer_activation = "relu"
dec_pred_bbox_embed_share = True
dn_box_noise_scale = 1.0
dn_label_noise_ratio = 0.5
dn_label_coef = 1.0
dn_bbox_coef = 1.0
embed_init_tgt = True
dn_labelbook_size = 2000
max_text_len = 256
text_encoder_type = "bert-base-uncased"
use_text_enhancer = True
use_fusion_layer = True
use_checkpoint = False
use_transformer_ckpt = False
use_text_cross_attention = True
text_dropout = 0.0
fusion_dropout = 0.0
fusion_droppath = 0.1
sub_sentence_present = True
"""


def save_tiny_groundingdino_package(folder: Path, words: list[str], seed: int = 0) -> DetectorSpec:
    """The original package's model (Swin-T backbone as its registry fixes it, 1 encoder / 2 decoder layers of width
    256, a 32-wide local BERT): config .py, ``{"model": state_dict}`` checkpoint and BERT folder."""
    import contextlib
    import io

    import torch
    from groundingdino.models import build_model
    from groundingdino.util.slconfig import SLConfig
    from transformers import BertConfig, BertModel

    folder = Path(folder)
    bert = folder / "bert"
    tokenizer = word_tokenizer(bert, words)
    tokenizer.save_pretrained(bert)
    torch.manual_seed(seed)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(bert)
    config_path = folder / "GroundingDINO_tiny.py"
    config_path.write_text(GROUNDINGDINO_PACKAGE_TINY)
    args = SLConfig.fromfile(str(config_path))
    args.text_encoder_type = str(bert)
    args.device = "cpu"
    with contextlib.redirect_stdout(io.StringIO()):
        model = build_model(args)
    checkpoint = folder / "groundingdino_tiny.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    return DetectorSpec(backend="groundingdino", config_path=str(config_path), checkpoint=str(checkpoint),
                        text_encoder=str(bert), image_size=128, box_threshold=0.0, text_threshold=0.0)


def save_tiny_sam(path: Path, seed: int = 0) -> SegmenterSpec:
    """A segment_anything SAM of the ``tiny`` architecture (models.build.SAM_ARCHS), saved as a state dict."""
    import torch
    from sufra.models.build import SAM_ARCHS, build_sam

    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build_sam(SAM_ARCHS["tiny"]).state_dict(), path)
    return SegmenterSpec(backend="sam", model_type="tiny", checkpoint=str(path))


def save_tiny_sam2(folder: Path, seed: int = 0) -> SegmenterSpec:
    """A transformers Sam2Model with a 16-wide Hiera (1 block per stage), processor included."""
    import torch
    from transformers import (
        Sam2Config,
        Sam2HieraDetConfig,
        Sam2ImageProcessorFast,
        Sam2MaskDecoderConfig,
        Sam2Model,
        Sam2Processor,
        Sam2PromptEncoderConfig,
        Sam2VisionConfig,
    )

    hiera = Sam2HieraDetConfig(hidden_size=16, blocks_per_stage=[1, 1, 1, 1], embed_dim_per_stage=[16, 32, 64, 128],
                               num_attention_heads_per_stage=[1, 1, 1, 1], window_size_per_stage=[8, 4, 14, 7],
                               global_attention_blocks=[])
    config = Sam2Config(
        vision_config=Sam2VisionConfig(backbone_config=hiera, backbone_channel_list=[128, 64, 32, 16], fpn_hidden_size=32),
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=32),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    torch.manual_seed(seed)
    folder = Path(folder)
    Sam2Model(config).eval().save_pretrained(folder)
    Sam2Processor(image_processor=Sam2ImageProcessorFast()).save_pretrained(folder)
    return SegmenterSpec(backend="sam2", model=str(folder))


def save_tiny_depth(folder: Path, seed: int = 0) -> str:
    """A DPT depth model (32 wide, 64 px input) loadable by AutoModelForDepthEstimation; returns the folder."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
                       patch_size=16, neck_hidden_sizes=[16, 32, 32, 32], fusion_hidden_size=32,
                       backbone_out_indices=[0, 1, 2, 3])
    torch.manual_seed(seed)
    folder = Path(folder)
    DPTForDepthEstimation(config).eval().save_pretrained(folder)
    DPTImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=False).save_pretrained(folder)
    return str(folder)
