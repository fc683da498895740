"""The class lists the papers average detection AP over (docs/sources.md V6).

Names, not ids, identify a class everywhere in the evaluation: the paper's existence maps and prompts
use names, and a ground-truth file whose ids are remapped (contiguous 1..80, say) must still score
the same classes. ``COCO_CATEGORIES`` keeps the official ``instances_val2017.json`` ids so fixtures and
tests can build a faithful category table.
"""

from __future__ import annotations

# (id, name) of COCO's 80 detection categories, as in instances_{train,val}2017.json.
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"),
    (7, "train"), (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"),
    (13, "stop sign"), (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"),
    (19, "horse"), (20, "sheep"), (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"),
    (25, "giraffe"), (27, "backpack"), (28, "umbrella"), (31, "handbag"), (32, "tie"),
    (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"), (37, "sports ball"),
    (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"), (42, "surfboard"),
    (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"), (49, "knife"),
    (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"),
    (70, "toilet"), (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"),
    (77, "cell phone"), (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"),
    (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"), (87, "scissors"),
    (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)
COCO_NAMES: tuple[str, ...] = tuple(name for _, name in COCO_CATEGORIES)

# Visual-RFT Tab. 3: the few-shot detection classes.
COCO_FEWSHOT_8: tuple[str, ...] = ("bus", "train", "fire hydrant", "stop sign", "cat", "dog", "bed", "toilet")
# Visual-RFT Tab. 7: the standard open-vocabulary COCO split (novel 15 / base 65), in the paper's order.
COCO_OV_NOVEL_15: tuple[str, ...] = (
    "mouse", "fork", "hot dog", "cat", "airplane", "suitcase", "parking meter", "sandwich", "train",
    "hair drier", "toilet", "toaster", "snowboard", "frisbee", "bear",
)
COCO_OV_BASE_65: tuple[str, ...] = tuple(n for n in COCO_NAMES if n not in COCO_OV_NOVEL_15)

# Visual-RFT Tab. 4 (few-shot, about 10 shots) and Tab. 8 (open vocabulary): LVIS v1 rare classes.
LVIS_FEWSHOT_6: tuple[str, ...] = ("horse_buggy", "die", "kitchen_table", "omelet", "papaya", "stepladder")
LVIS_OV_RARE_13: tuple[str, ...] = (
    "casserole", "die", "egg_roll", "futon", "garbage", "handsaw", "hippopotamus", "kitchen_table",
    "mallet", "omelet", "shot_glass", "stepladder", "sugar_bowl",
)

assert len(COCO_CATEGORIES) == 80 and len(set(COCO_NAMES)) == 80
assert len(COCO_OV_BASE_65) == 65 and set(COCO_FEWSHOT_8) <= set(COCO_NAMES)


def coco_categories() -> list[dict]:
    """The COCO ``categories`` table (``{"id", "name"}``), for building ground-truth dicts."""
    return [{"id": i, "name": n} for i, n in COCO_CATEGORIES]
