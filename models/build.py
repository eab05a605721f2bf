"""Every architecture hyper-parameter in one place: a name -> builder registry for SAM image encoders, and
torch device selection."""

from __future__ import annotations

from functools import partial

from pydantic import BaseModel

SAM_CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}


class SamArch(BaseModel):
    """A segment_anything SAM: ViT image encoder + prompt encoder + mask decoder."""

    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: list[int] = [2, 5, 8, 11]
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8


SAM_ARCHS: dict[str, SamArch] = {
    "vit_b": SamArch(),
    "vit_l": SamArch(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=[5, 11, 17, 23]),
    "vit_h": SamArch(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=[7, 15, 23, 31]),
    # a few-MB random model for tests and the offline demo
    "tiny": SamArch(img_size=256, embed_dim=64, depth=2, num_heads=2, global_attn_indexes=[1], window_size=4,
                    prompt_embed_dim=32, decoder_mlp_dim=64, decoder_heads=2),
}


def build_sam(arch: SamArch):
    """Construct (random-initialised) ``segment_anything.modeling.Sam`` for an architecture."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    grid = arch.img_size // arch.patch_size
    encoder = ImageEncoderViT(
        img_size=arch.img_size, patch_size=arch.patch_size, embed_dim=arch.embed_dim, depth=arch.depth,
        num_heads=arch.num_heads, mlp_ratio=4, out_chans=arch.prompt_embed_dim, qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True, window_size=arch.window_size,
        global_attn_indexes=tuple(arch.global_attn_indexes),
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(embed_dim=arch.prompt_embed_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(arch.img_size, arch.img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=arch.prompt_embed_dim, mlp_dim=arch.decoder_mlp_dim, num_heads=arch.decoder_heads),
            transformer_dim=arch.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
