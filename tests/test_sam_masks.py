"""Box → SAM mask plumbing for the LISA gIoU/cIoU path, on a tiny random SAM built offline.

Random weights: these tests check shapes, types, batching, the None-box rule and that masks stored as
RLE score exactly as numpy says. They say nothing about segmentation quality.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vrft.testing.tiny_sam import make_tiny_sam
from vrft.verifiers.evaluation.item_scores import mask_metrics, to_mask
from vrft.verifiers.evaluation.sam_masks import BoxMasker, add_masks, paper_box


@pytest.fixture(scope="module")
def masker(tmp_path_factory) -> BoxMasker:
    return BoxMasker(make_tiny_sam(tmp_path_factory.mktemp("sam") / "tiny_sam"), device="cpu", batch_size=2)


def _images() -> list[Image.Image]:
    """Two sizes, landscape and portrait, so resizing, padding and un-padding are all exercised."""
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (50, 30, 3), dtype=np.uint8))]


def _rect(h: int, w: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y1:y2, x1:x2] = True
    return m


def test_masks_shape_dtype_none_and_determinism(masker):
    images = _images()
    boxes = [[5, 5, 40, 30], [2, 3, 20, 40]]
    masks = masker.masks(images, boxes)
    assert [m.shape for m in masks] == [(40, 60), (50, 30)]  # H×W of the originals, not SAM's 64²
    assert all(m.dtype == np.bool_ for m in masks)
    again = masker.masks(images, boxes)
    assert all(np.array_equal(a, b) for a, b in zip(masks, again, strict=True))

    # A None box is an empty mask and does not disturb its neighbours' batch positions.
    mixed = masker.masks([images[0], images[1], images[0]], [None, boxes[1], boxes[0]])
    assert mixed[0].shape == (40, 60) and not mixed[0].any()
    # Batching (2 per pass) vs one at a time: each image keeps its own box (float noise aside).
    for got, want in ((mixed[1], masks[1]), (mixed[2], masks[0])):
        assert (got == want).mean() > 0.99

    with pytest.raises(ValueError):
        masker.masks(images, boxes[:1])
    with pytest.raises(ValueError):
        masker.masks(images[:1], [[1, 2, 3]])


def test_rle_records_score_as_numpy(masker):
    images = _images()
    boxes = [[5, 5, 40, 30], None]
    gts = [_rect(40, 60, 10, 8, 45, 30), _rect(50, 30, 0, 10, 25, 50)]
    records = [{"id": "a"}, {"id": "b"}]
    assert add_masks(records, images, boxes, masker) is records
    direct = masker.masks(images, boxes)
    for rec, mask in zip(records, direct, strict=True):
        assert set(rec["mask"]) == {"size", "counts"} and isinstance(rec["mask"]["counts"], str)
        assert np.array_equal(to_mask(rec["mask"]), mask)

    inter = [np.logical_and(p, g).sum() for p, g in zip(direct, gts, strict=True)]
    union = [np.logical_or(p, g).sum() for p, g in zip(direct, gts, strict=True)]
    want_g = np.mean([i / (u + 1e-6) for i, u in zip(inter, union, strict=True)])
    want_c = sum(inter) / (sum(union) + 1e-6)
    got = mask_metrics([r["mask"] for r in records], gts)
    assert got["gIoU"] == pytest.approx(want_g, abs=1e-6)
    assert got["cIoU"] == pytest.approx(want_c, abs=1e-6)
    assert union[1] == gts[1].sum()  # the None box: IoU 0, its ground truth still counts in ΣU


def test_paper_box_truncates_like_box2mask():
    assert paper_box("<answer>(100,200),(500,999)</answer>", 640, 480) == [64, 96, 320, 479]
    assert paper_box("no box here", 640, 480) is None
