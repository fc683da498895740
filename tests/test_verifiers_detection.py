"""Table-driven tests of the Visual-RFT box rewards: detection_iou, detection_confidence, grounding_iou,
grounding_giou. Expected values are worked out by hand in the comments."""

from __future__ import annotations

import pytest

from vrft import verifiers
from vrft.verifiers.rewards_detection import parse_detections

A = [0, 0, 100, 100]
B = [200, 200, 300, 300]
GT2 = {"boxes": [A, B]}
EMPTY = {"boxes": []}


def det(*items: tuple) -> str:
    """A completion whose answer is the paper's list, written the way Qwen2-VL writes it."""
    body = ", ".join(f"{{'Position': {list(p)}, 'Confidence': {c}}}" for p, c in items)
    return f"<think>looking</think><answer>[{body}]</answer>"


def iou(a: list, b: list) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


NEAR_A = [5, 0, 100, 100]  # IoU with A = 9500/10000 = 0.95
CASES = [
    # (id, completion, ground truth, options, expected IoU reward, expected confidence reward)
    ("perfect", det((A, 0.9), (B, 0.8)), GT2, {}, 1.0, 0.85),
    ("one_of_two", det((NEAR_A, 0.9)), GT2, {}, 0.95 / 2, 0.9),
    ("denominator_pred_eq6", det((NEAR_A, 0.9)), GT2, {"denominator": "pred"}, 0.95, 0.9),
    ("extra_wrong_box", det((A, 0.9), ([500, 500, 600, 600], 0.4)), {"boxes": [A]}, {}, 0.5, (0.9 + 0.6) / 2),
    ("double_brackets",
     "<answer>[[{'Position': [[0, 0, 100, 100]], 'Confidence': 0.9}]]</answer>", GT2, {}, 0.5, 0.9),
    ("truncated_list_cut_at_last_item",
     "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Position': [200, 200, 300, 300], "
     "'Confidence': 0.8}, {'Position': [5, 6</answer>", GT2, {}, 1.0, 0.85),
    ("truncated_by_max_tokens_no_close_tag",
     "<think>a</think><answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Posi", GT2, {}, 0.5, 0.9),
    ("list_ending_after_item", "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}</answer>",
     GT2, {}, 0.5, 0.9),
    ("multiline_pretty_json",
     '<answer>[\n  {"Position": [0, 0, 100, 100],\n   "Confidence": 0.9}\n]</answer>', GT2, {}, 0.5, 0.9),
    # Duplicates are dropped before anything else: one prediction remains.
    ("duplicates", det((A, 0.9), (A, 0.3), (A, 0.5)), GT2, {}, 0.5, 0.9),
    # NaN confidence: that prediction is invalid (counted, never matched, confidence term 0).
    ("nan_confidence", det((A, "NaN"), (B, 0.8)), GT2, {}, 0.5, 0.4),
    ("infinite_confidence", det((A, "Infinity"), (B, 0.8)), GT2, {}, 0.5, 0.4),
    ("confidence_above_one", det((A, 1.5), (B, 0.8)), GT2, {}, 0.5, 0.4),
    ("bool_confidence", det((A, "true"), (B, 0.8)), GT2, {}, 0.5, 0.4),
    ("nan_coordinate", "<answer>[{'Position': [0, NaN, 100, 100], 'Confidence': 0.9}]</answer>",
     GT2, {}, 0.0, 0.0),
    ("out_of_range_coordinate", det(([0, 0, 1200, 100], 0.9)), GT2, {}, 0.0, 0.0),
    ("huge_exponent_coordinate", "<answer>[{'Position': [0, 0, 1e999, 100], 'Confidence': 0.9}]</answer>",
     GT2, {}, 0.0, 0.0),
    ("missing_confidence", "<answer>[{'Position': [0, 0, 100, 100]}]</answer>", GT2, {}, 0.0, 0.0),
    ("non_dict_item", '<answer>[{"Position": [0, 0, 100, 100], "Confidence": 0.9}, "junk"]</answer>',
     GT2, {}, 0.5, 0.45),
    ("first_item_not_dict_paper_rule", "<answer>[[1, 2, 3, 4]]</answer>", GT2, {}, 0.0, 0.0),
    # IoU exactly 0.5 is not a match (the paper's strict `>`): confidence term 1 - c.
    ("iou_exactly_half", det(([0, 0, 100, 50], 0.7)), {"boxes": [A]}, {}, 0.0, 0.3),
    # Sorted by confidence: the 0.9 box (listed second) takes A; the 0.2 box is left unmatched.
    ("confidence_order", det(([0, 0, 90, 100], 0.2), (A, 0.9)), {"boxes": [A]}, {}, 0.5, (0.9 + 0.8) / 2),
    ("reversed_box_never_matches", det(([100, 100, 0, 0], 0.4)), {"boxes": [A]}, {}, 0.0, 0.6),
    ("empty_answer", "<think>x</think><answer></answer>", GT2, {}, 0.0, 0.0),
    ("garbage", "<answer>I see two cats</answer>", GT2, {}, 0.0, 0.0),
    ("no_objects_on_objects", "<answer>No Objects</answer>", GT2, {}, 0.0, 0.0),
    ("empty_list_on_objects", "<answer>[]</answer>", GT2, {}, 0.0, 0.0),
    ("no_objects_on_empty_gt", "<think>none</think><answer>No Objects</answer>", EMPTY, {}, 1.0, 1.0),
    ("empty_list_on_empty_gt", "<answer>[]</answer>", EMPTY, {}, 1.0, 1.0),
    ("no_objects_visual_rft_code", "<answer>No Objects</answer>", EMPTY, {"no_objects": "visual_rft"}, 0.0, 0.0),
    ("boxes_on_empty_gt", det((A, 0.3)), EMPTY, {}, 0.0, 0.7),
    ("boxes_on_empty_gt_visual_rft", det((A, 0.3)), EMPTY, {"no_objects": "visual_rft"}, 0.0, 0.0),
    ("no_tags_whole_completion", "[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}]", GT2, {}, 0.5, 0.9),
]


@pytest.mark.parametrize(("completion", "gt", "options", "want_iou", "want_conf"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detection_table(completion: str, gt: dict, options: dict, want_iou: float, want_conf: float) -> None:
    iou_opts = options
    conf_opts = {k: v for k, v in options.items() if k != "denominator"}
    got_iou = verifiers.get_reward("detection_iou", **iou_opts)(completion, gt)
    got_conf = verifiers.get_reward("detection_confidence", **conf_opts)(completion, gt)
    assert got_iou == pytest.approx(want_iou, abs=1e-9)
    assert got_conf == pytest.approx(want_conf, abs=1e-9)


def test_hungarian_beats_greedy_where_greedy_is_suboptimal() -> None:
    g1, g2 = [0, 0, 100, 100], [40, 0, 140, 100]
    p1, p2 = [30, 0, 130, 100], [45, 0, 145, 100]
    # Greedy: p1 (conf .9) takes g2 (IoU .818 > .538); p2 then only has g1 at IoU .379 < .5.
    # Hungarian: p1-g1 (.538) + p2-g2 (.905).
    gt = {"boxes": [g1, g2]}
    c = det((p1, 0.9), (p2, 0.5))
    greedy = verifiers.get_reward("detection_iou")(c, gt)
    hung = verifiers.get_reward("detection_iou", matching="hungarian")(c, gt)
    assert greedy == pytest.approx(iou(p1, g2) / 2)
    assert hung == pytest.approx((iou(p1, g1) + iou(p2, g2)) / 2)
    assert verifiers.get_reward("detection_confidence")(c, gt) == pytest.approx((0.9 + 0.5) / 2)
    assert verifiers.get_reward("detection_confidence", matching="hungarian")(c, gt) == pytest.approx(0.7)


def test_parse_keeps_answer_order_and_counts_invalid() -> None:
    parsed = parse_detections(det((B, 0.1), (A, "NaN"), (A, 0.9)))
    assert parsed is not None
    valid, n_invalid = parsed
    # The NaN item claims A first (duplicates are by Position), so the later A is dropped.
    assert valid == [(0.1, 200, 200, 300, 300)] and n_invalid == 1


@pytest.mark.parametrize("gt", [{}, {"boxes": [[0, 0, 1]]}, {"boxes": [[0, 0, float("nan"), 1]]},
                                {"boxes": [[10, 0, 5, 5]]}, {"box": A}])
def test_malformed_detection_ground_truth_raises(gt: dict) -> None:
    with pytest.raises(ValueError):
        verifiers.get_reward("detection_iou")(det((A, 0.9)), gt)


# ---- grounding (LISA) ---------------------------------------------------------------------------

G = {"box": [100, 100, 300, 300]}
GROUNDING = [
    # (id, completion, ground truth, IoU, GIoU + 1)
    ("exact", "<think>t</think><answer>(100,100),(300,300)</answer>", G, 1.0, 2.0),
    ("spaces", "<answer>( 100 , 100 ) , ( 300 , 300 )</answer>", G, 1.0, 2.0),
    ("half", "<answer>(100,100),(200,300)</answer>", G, 0.5, 1.5),
    # Disjoint: C = 400², U = 200² + 100² → GIoU = -(160000 - 50000) / 160000.
    ("disjoint", "<answer>(400,400),(500,500)</answer>", G, 0.0, 1 - 110000 / 160000),
    ("first_box_wins", "<answer>(100,100),(300,300) or (0,0),(10,10)</answer>", G, 1.0, 2.0),
    ("no_tags", "(100,100),(300,300)", G, 1.0, 2.0),
    ("no_box", "<answer>the dog on the left</answer>", G, 0.0, 0.0),
    ("empty", "", G, 0.0, 0.0),
    ("reversed_corners", "<answer>(300,300),(100,100)</answer>", G, 0.0, 0.0),
    ("absurd_number", "<answer>(1000000000000,1),(2,3)</answer>", G, 0.0, 0.0),
    ("degenerate_gt_exact", "<answer>(5,5),(5,5)</answer>", {"box": [5, 5, 5, 5]}, 1.0, 2.0),
    # IoU 0; the enclosing box is the prediction itself (C = U = 100), so GIoU = 0 and the reward 1.
    ("degenerate_gt_miss", "<answer>(0,0),(10,10)</answer>", {"box": [5, 5, 5, 5]}, 0.0, 1.0),
]


@pytest.mark.parametrize(("completion", "gt", "want_iou", "want_giou"),
                         [c[1:] for c in GROUNDING], ids=[c[0] for c in GROUNDING])
def test_grounding_table(completion: str, gt: dict, want_iou: float, want_giou: float) -> None:
    assert verifiers.get_reward("grounding_iou")(completion, gt) == pytest.approx(want_iou)
    assert verifiers.get_reward("grounding_giou")(completion, gt) == pytest.approx(want_giou)

