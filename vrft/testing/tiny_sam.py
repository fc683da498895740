"""A tiny SAM with random weights, made offline, for the LISA box → mask tests.

The LISA gIoU/cIoU path prompts SAM ViT-H (2.5 GB, hub-only) with the predicted box. Tests cannot
download it, so this builds the same `SamModel` architecture at toy sizes plus a matching
`SamProcessor`, and saves both with `save_pretrained`: the folder loads exactly as a converted
`facebook/sam-vit-huge` does, so `vrft.verifiers.evaluation.sam_masks.BoxMasker` runs its real code path on it.
The masks it gives are meaningless (random weights); only shapes, types and plumbing are testable.

Sizes: 64-px inputs, 8-px patches (an 8×8 image embedding, 32×32 low-resolution masks), vision
width 16 with 2 layers (windowed then global attention), 16-wide prompt encoder and mask decoder:
about 19k parameters, milliseconds per image on CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import SamConfig, SamImageProcessorPil, SamModel, SamProcessor

_IMAGE = 64  # processor longest edge = pad size = vision image_size = prompt-encoder image_size
_PATCH = 8
_WIDTH = 16  # vision neck output = prompt encoder = mask decoder hidden size (they must agree)


def tiny_sam_config() -> SamConfig:
    """The toy `SamConfig`. The three sub-configs share one embedding width and one image grid
    because SAM adds the prompt and image embeddings elementwise; mismatched sizes fail at runtime."""
    return SamConfig(
        vision_config=dict(
            hidden_size=_WIDTH, output_channels=_WIDTH, num_hidden_layers=2, num_attention_heads=2,
            image_size=_IMAGE, patch_size=_PATCH, mlp_dim=32, window_size=4, global_attn_indexes=[1],
            num_pos_feats=_WIDTH // 2,  # the shared positional embedding is 2 × num_pos_feats wide
        ),
        prompt_encoder_config=dict(hidden_size=_WIDTH, image_size=_IMAGE, patch_size=_PATCH,
                                   mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=_WIDTH, mlp_dim=32, num_hidden_layers=1, num_attention_heads=2,
                                 iou_head_hidden_dim=_WIDTH),
    )


def tiny_sam_processor() -> SamProcessor:
    """A `SamProcessor` resizing the longest edge to 64 and padding to 64×64 (SAM's 1024 scaled down):
    the processor's size must equal the model's image_size, since boxes are normalised to it. The PIL
    backend needs no torchvision, and it is the one `BoxMasker` loads."""
    mask = _IMAGE // 4
    image_processor = SamImageProcessorPil(
        size={"longest_edge": _IMAGE}, pad_size={"height": _IMAGE, "width": _IMAGE},
        mask_size={"longest_edge": mask}, mask_pad_size={"height": mask, "width": mask},
    )
    return SamProcessor(image_processor=image_processor)


def make_tiny_sam(out_dir: str | Path, seed: int = 0) -> Path:
    """Build a seeded random tiny `SamModel` and its `SamProcessor` in `out_dir`; nothing is downloaded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # seed the weights without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = SamModel(tiny_sam_config())
    model.save_pretrained(out)
    tiny_sam_processor().save_pretrained(out)
    return out
