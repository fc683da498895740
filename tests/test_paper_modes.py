"""The paper-exact reward settings (``vrft.verifiers.paper_modes.PAPER_OPTIONS``) against cases worked out by
hand from the papers' reward code (docs/sources.md V3 Visual-RFT, R4 Reason-RFT), each beside what the
project's default pays, so every row where the two differ is pinned down (docs/paper-semantics.md)."""

from __future__ import annotations

import concurrent.futures
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrft import verifiers
from vrft.verifiers import budget
from vrft.verifiers.paper_modes import PAPER_OPTIONS
from vrft.verifiers.rewards_detection import paper_detection_solution


def ans(text: str) -> str:
    return f"<think>reasoning</think><answer>{text}</answer>"


def paper(name: str) -> verifiers.registry.RewardFn:
    return verifiers.get_reward(name, **PAPER_OPTIONS[name])


def default(name: str) -> verifiers.registry.RewardFn:
    return verifiers.get_reward(name)


# ---- the mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PAPER_OPTIONS))
def test_every_paper_setting_validates_through_the_registry(name: str) -> None:
    fn = verifiers.get_reward(name, **PAPER_OPTIONS[name])
    assert callable(fn)
    assert set(PAPER_OPTIONS[name]) <= set(verifiers.reward_info(name).options)


def test_every_builtin_with_a_paper_counterpart_has_an_entry() -> None:
    # `choice` is the project's own lenient letter reward; the papers compare letters as exact strings
    # (Reason-RFT's accuracy_reward, i.e. `math`/`counting` here). `tool_bonus` reads multi-turn
    # trajectories, which neither paper has.
    assert set(PAPER_OPTIONS) == set(verifiers.list_rewards()) - {"choice", "tool_bonus"}


@pytest.mark.parametrize(("name", "options"), [
    ("math", {"fallback": "sometimes"}),
    ("math_tolerance", {"mode": "paper"}),
    ("detection_iou", {"parsing": "loose"}),
    ("detection_confidence", {"math_verify": "yes"}),
    ("classification", {"math_verify": 1}),
    ("grounding_giou", {"mode": "lisa"}),
    ("grounding_iou", {"math_verify": True}),  # the eval script has no math-verify shortcut
])
def test_bad_paper_option_values_fail_at_lookup(name: str, options: dict) -> None:
    with pytest.raises(ValueError, match=name):
        verifiers.get_reward(name, **options)


# ---- format (both papers) -------------------------------------------------------------------------

FORMAT = [  # re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", c, re.DOTALL): paper = default
    ("<think>a\nb</think>\n <answer>c\nd</answer>", 1.0),
    ("<think>a</think><answer>b</answer>\n", 0.0),  # full match: nothing after </answer>
    ("x<think>a</think><answer>b</answer>", 0.0),  # nor before <think>
    ("<think>a</think> so <answer>b</answer>", 0.0),
]


@pytest.mark.parametrize(("completion", "want"), FORMAT)
def test_format(completion: str, want: float) -> None:
    assert paper("format")(completion, {}) == want == default("format")(completion, {})


# ---- classification (Visual-RFT grpo_classification.py) -------------------------------------------

CLASSIFICATION = [
    # (id, completion, ground truth, paper, default strict)
    ("several_classes", ans("pink primrose or rose or daisy"), "pink primrose", 1.0, 0.0),  # issue #79
    ("empty_answer", ans(""), "pink primrose", 1.0, 0.0),  # "" is in every ground truth
    ("one_letter", ans("e"), "pink primrose", 1.0, 0.0),
    ("answer_inside_gt", ans("rose"), "lenten rose", 1.0, 0.0),  # pred in gt
    ("normalization", ans("Pink_Primrose"), "pink primrose", 1.0, 1.0),  # no spaces / _, lower-case
    ("wrong_class", ans("daisy"), "pink primrose", 0.0, 0.0),
    ("untagged_whole_completion", "the flower is a pink primrose", "pink primrose", 1.0, 0.0),
    # No DOTALL: a multi-line answer is not found, so the whole completion (think text included) is
    # the answer, and it names the ground truth.
    ("multiline_answer_no_dotall", "<think>not a daisy</think><answer>\nrose\n</answer>", "daisy", 1.0, 0.0),
    # The math-verify shortcut: parse() reads 737 from both "<answer>Boeing 737-400</answer>" and
    # "<answer>Boeing 737-300</answer>" (math-verify 0.5.2 and 0.9.0 alike), so a wrong variant pays 1.
    ("math_verify_shortcut", ans("Boeing 737-400"), "Boeing 737-300", 1.0, 0.0),
]


@pytest.mark.parametrize(("completion", "gt", "want_paper", "want_default"),
                         [c[1:] for c in CLASSIFICATION], ids=[c[0] for c in CLASSIFICATION])
def test_classification(completion: str, gt: str, want_paper: float, want_default: float) -> None:
    assert paper("classification")(completion, {"answer": gt}) == want_paper
    assert default("classification")(completion, {"answer": gt}) == want_default


def test_classification_shortcut_is_its_own_option() -> None:
    # The substring test alone does not pay the wrong variant; only the shortcut does.
    no_shortcut = verifiers.get_reward("classification", mode="visual_rft")
    assert no_shortcut(ans("Boeing 737-400"), {"answer": "Boeing 737-300"}) == 0.0


def test_the_shortcut_is_time_budgeted_and_works_off_the_main_thread() -> None:
    fn = paper("classification")
    case = (ans("Boeing 737-400"), {"answer": "Boeing 737-300"})
    budget.take_exceeded()
    with budget.completion_budget(0.0):  # spent: math-verify is not started, the string test decides
        assert fn(*case) == 0.0
    assert budget.take_exceeded() == 1
    with concurrent.futures.ThreadPoolExecutor(1) as ex:  # math-verify in the helper process
        assert ex.submit(fn, *case).result(timeout=120) == 1.0


# ---- detection (Visual-RFT grpo.py) ---------------------------------------------------------------

A = [0, 0, 100, 100]
B = [200, 200, 300, 300]
GT2 = {"boxes": [A, B]}
GT_A = {"boxes": [A]}
EMPTY = {"boxes": []}


def det(*items: tuple) -> str:
    body = ", ".join(f"{{'Position': {list(p)}, 'Confidence': {c}}}" for p, c in items)
    return f"<think>looking</think><answer>[{body}]</answer>"


DETECTION = [
    # (id, completion, ground truth, paper IoU, paper conf, default IoU, default conf)
    ("perfect", det((A, 0.9), (B, 0.8)), GT2, 1.0, 0.85, 1.0, 0.85),
    # compute_reward_iou_v2: Σ IoU / max(n_gt, n_pred); one of two found.
    ("one_of_two", det((A, 0.9)), GT2, 0.5, 0.9, 0.5, 0.9),
    # The paper's extract_bbox cannot parse its own "No Objects" ground truth: 0 whatever is said.
    ("no_objects_on_negative", "<think>none</think><answer>No Objects</answer>", EMPTY, 0.0, 0.0, 1.0, 1.0),
    ("empty_list_on_negative", "<answer>[]</answer>", EMPTY, 0.0, 0.0, 1.0, 1.0),
    ("boxes_on_negative", det((A, 0.3)), EMPTY, 0.0, 0.0, 0.0, 0.7),
    ("no_objects_on_objects", "<answer>No Objects</answer>", GT2, 0.0, 0.0, 0.0, 0.0),
    # No DOTALL: a pretty-printed list is not found; the wrapped whole completion does not parse.
    ("multiline_list", '<answer>[\n  {"Position": [0, 0, 100, 100],\n   "Confidence": 0.9}\n]</answer>',
     GT2, 0.0, 0.0, 0.5, 0.9),
    # Cut by max tokens: no </answer>, so the wrapped text starts with "<think>" and never parses.
    ("truncated_after_think",
     "<think>a</think><answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Posi", GT2, 0.0, 0.0, 0.5, 0.9),
    # Without any tag the truncation repair does work: cut at the last "}," and close with "}]".
    ("truncated_no_tags", "[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Posi", GT2, 0.5, 0.9, 0.5, 0.9),
    # A list missing only its "]": the paper cuts at the last "}," and so drops the last item.
    ("missing_bracket_two_items", det((A, 0.9), (B, 0.8))[:-10] + "</answer>", GT2, 0.5, 0.9, 1.0, 0.85),
    # ... and with one item there is no "},": "[{...}" + "}]" is not JSON.
    ("missing_bracket_one_item", "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}</answer>",
     GT2, 0.0, 0.0, 0.5, 0.9),
    ("double_brackets", "<answer>[[{'Position': [[0, 0, 100, 100]], 'Confidence': 0.9}]]</answer>",
     GT2, 0.5, 0.9, 0.5, 0.9),
    # Coordinates outside 0–1000 are used as they are: IoU with A = 100·100 / 120000, no match, 1 − c.
    ("out_of_range_coordinate", det(([0, 0, 1200, 100], 0.9)), GT2, 0.0, 0.1, 0.0, 0.0),
    # Confidence used raw, the mean clipped: (1.5 + 0.8) / 2 → 1; both boxes match.
    ("confidence_above_one", det((A, 1.5), (B, 0.8)), GT2, 1.0, 1.0, 0.5, 0.4),
    # An unmatched −0.5 contributes 1 − (−0.5) = 1.5: (0.9 + 1.5) / 2 → clipped to 1.
    ("negative_confidence", det((A, 0.9), ([500, 500, 600, 600], -0.5)), GT_A, 0.5, 1.0, 0.5, 0.45),
    ("bool_confidence_is_one", det((A, "true"), (B, 0.8)), GT2, 1.0, 0.9, 0.5, 0.4),
    # Kept guard: the paper gives this a NaN confidence reward (its issues #39, #115, #118); here the
    # NaN prediction is invalid (counted, never matched, confidence term 0) in both settings.
    ("nan_confidence_guard", det((A, "NaN"), (B, 0.8)), GT2, 0.5, 0.4, 0.5, 0.4),
    ("missing_confidence", "<answer>[{'Position': [0, 0, 100, 100]}]</answer>", GT2, 0.0, 0.0, 0.0, 0.0),
    # remove_duplicates indexes every item: a non-dict item raises, the paper's except pays 0.
    ("non_dict_item", '<answer>[{"Position": [0, 0, 100, 100], "Confidence": 0.9}, "junk"]</answer>',
     GT2, 0.0, 0.0, 0.5, 0.45),
    # A 3-number Position raises in calculate_iou while a GT box is free (B is, after A matched) ...
    ("malformed_position_gt_free",
     "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Position': [0, 0, 100], 'Confidence': 0.5}]"
     "</answer>", GT2, 0.0, 0.0, 0.5, 0.45),
    # ... but is recorded as (0, c) once every GT box is taken: IoU 1/2, confidence (0.9 + 0.5) / 2.
    ("malformed_position_gt_taken",
     "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 0.9}, {'Position': [0, 0, 100], 'Confidence': 0.5}]"
     "</answer>", GT_A, 0.5, 0.7, 0.5, 0.45),
    ("iou_exactly_half_no_match", det(([0, 0, 100, 50], 0.7)), GT_A, 0.0, 0.3, 0.0, 0.3),  # strict > 0.5
    ("confidence_order", det(([0, 0, 90, 100], 0.2), (A, 0.9)), GT_A, 0.5, 0.85, 0.5, 0.85),
    ("duplicates", det((A, 0.9), (A, 0.3)), GT2, 0.5, 0.9, 0.5, 0.9),
]


def without_shortcut(name: str) -> verifiers.registry.RewardFn:
    return verifiers.get_reward(name, **{k: v for k, v in PAPER_OPTIONS[name].items() if k != "math_verify"})


@pytest.mark.parametrize(("completion", "gt", "p_iou", "p_conf", "d_iou", "d_conf"),
                         [c[1:] for c in DETECTION], ids=[c[0] for c in DETECTION])
def test_detection(completion: str, gt: dict, p_iou: float, p_conf: float, d_iou: float, d_conf: float) -> None:
    # The paper's parsing and matching, without the math-verify shortcut (which the next table pins).
    assert without_shortcut("detection_iou")(completion, gt) == pytest.approx(p_iou, abs=1e-12)
    assert without_shortcut("detection_confidence")(completion, gt) == pytest.approx(p_conf, abs=1e-12)
    assert default("detection_iou")(completion, gt) == pytest.approx(d_iou, abs=1e-12)
    assert default("detection_confidence")(completion, gt) == pytest.approx(d_conf, abs=1e-12)


NEAR_A = [0, 5, 100, 100]  # IoU with A = 9500 / 10000
SHORTCUT = [
    # (id, completion, ground truth, paper IoU, paper conf). math-verify's parse() reads the first
    # box's y1 from the completion and from the paper's solution string (math-verify 0.5.2 and 0.9.0
    # alike): when they are equal, both rewards pay 1.0 before any box is looked at.
    ("perfect_pays_one_not_mean_confidence", det((A, 0.9), (B, 0.8)), GT2, 1.0, 1.0),
    ("miss_with_the_same_first_y1", det(([500, 0, 600, 700], 0.3)), GT_A, 1.0, 1.0),
    ("no_objects_is_not_read", "<answer>No Objects</answer>", EMPTY, 0.0, 0.0),
    # A different first y1: the shortcut stays silent and the boxes decide (0.95 / 1, c = 0.9).
    ("different_first_y1", det((NEAR_A, 0.9)), GT_A, 0.95, 0.9),
]


@pytest.mark.parametrize(("completion", "gt", "p_iou", "p_conf"),
                         [c[1:] for c in SHORTCUT], ids=[c[0] for c in SHORTCUT])
def test_detection_math_verify_shortcut(completion: str, gt: dict, p_iou: float, p_conf: float) -> None:
    assert paper("detection_iou")(completion, gt) == pytest.approx(p_iou, abs=1e-12)
    assert paper("detection_confidence")(completion, gt) == pytest.approx(p_conf, abs=1e-12)


def test_detection_solution_string_is_the_papers() -> None:
    assert paper_detection_solution([(0, 0, 100, 100), (200.0, 200, 300, 300)]) == (
        "<answer>[{'Position': [0, 0, 100, 100], 'Confidence': 1}, "
        "{'Position': [200, 200, 300, 300], 'Confidence': 1}]</answer>")
    assert paper_detection_solution([]) == "<answer>No Objects</answer>"


# ---- LISA grounding (Visual-RFT grpo_lisa.py, Qwen2_VL_lisa_infere.py) -----------------------------

G = {"box": [100, 100, 300, 300]}
GIOU = [
    # (id, completion, ground truth, paper, default)
    ("exact_string", "<think>t</think><answer>(100,100),(300,300)</answer>", G, 2.0, 2.0),
    ("multiline_dotall", "<think>t</think><answer>\n(100,100),(300,300)\n</answer>", G, 2.0, 2.0),
    ("same_box_spaced", "<answer>( 100 , 100 ) , ( 300 , 300 )</answer>", G, 2.0, 2.0),  # GIoU 1
    ("half", "<answer>(100,100),(200,300)</answer>", G, 1.5, 1.5),
    # findall mixes corners: (100,100) and the second box's top-left (0,0), a box written backwards:
    # I = 0, areas .04 and .01, U = .05, C = .2·.2 = .04, GIoU = 0 − (.04 − .05)/.04 = .25.
    ("two_boxes_mix_corners", "<answer>(100,100),(300,300) or (0,0),(10,10)</answer>", G, 1.25, 2.0),
    # Corners (0,0), (100,100): disjoint from G, U = .05, C = .09: GIoU = −4/9. Default: the first box
    # (0,0),(10,10): U = 40100, C = 90000 (in the 0–1000 frame).
    ("two_boxes_second_below", "<answer>(0,0),(10,10), (100,100),(300,300)</answer>", G, 5 / 9,
     1 - 49900 / 90000),
    # Backwards on the ground truth: signed areas give I = 0, U = .08, C = .04, GIoU = 1 → 2.0.
    ("written_backwards", "<answer>(300,300),(100,100)</answer>", G, 2.0, 0.0),
    # The paper's arithmetic pays 101 here (U = .0101, C = .0001); kept guard: clipped to 2.
    ("backwards_unbounded_clipped", "<answer>(100,100),(0,0)</answer>", {"box": [0, 0, 10, 10]}, 2.0, 0.0),
    ("degenerate_gt_same_string", "<answer>(5,5),(5,5)</answer>", {"box": [5, 5, 5, 5]}, 2.0, 2.0),
    # Not the same string: U = 0 → IoU 0, C = 0 → GIoU = IoU = 0 → 1.0 (default: the same box → 2).
    ("degenerate_gt_other_string", "<answer>( 5,5),(5,5)</answer>", {"box": [5, 5, 5, 5]}, 1.0, 2.0),
    ("no_box", "<answer>the dog on the left</answer>", G, 0.0, 0.0),
]


@pytest.mark.parametrize(("completion", "gt", "want_paper", "want_default"),
                         [c[1:] for c in GIOU], ids=[c[0] for c in GIOU])
def test_grounding_giou(completion: str, gt: dict, want_paper: float, want_default: float) -> None:
    assert paper("grounding_giou")(completion, gt) == pytest.approx(want_paper, abs=1e-12)
    assert default("grounding_giou")(completion, gt) == pytest.approx(want_default, abs=1e-12)


GROUNDING_IOU = [
    # (id, completion, paper (the eval script: I / (A + B − I + 1e-6) on /1000 boxes), default)
    ("exact", "<answer>(100,100),(300,300)</answer>", 0.04 / 0.040001, 1.0),
    ("half", "<answer>(100,100),(200,300)</answer>", 0.02 / 0.040001, 0.5),
    # The script's regex runs over the whole response: a box in the think text comes first.
    ("box_in_think_first", "<think>not (0,0),(10,10)</think><answer>(100,100),(300,300)</answer>", 0.0, 1.0),
    ("reversed", "<answer>(300,300),(100,100)</answer>", 0.0, 0.0),
    ("none", "<answer>nothing</answer>", 0.0, 0.0),
]


@pytest.mark.parametrize(("completion", "want_paper", "want_default"),
                         [c[1:] for c in GROUNDING_IOU], ids=[c[0] for c in GROUNDING_IOU])
def test_grounding_iou(completion: str, want_paper: float, want_default: float) -> None:
    assert paper("grounding_iou")(completion, G) == pytest.approx(want_paper, abs=1e-12)
    assert default("grounding_iou")(completion, G) == pytest.approx(want_default, abs=1e-12)


# ---- Reason-RFT accuracy_reward: counting and structure perception --------------------------------

COUNTING = [  # the paper's setting is the default: exact string, math-verify only without a tag
    (ans("3"), "3", 1.0),
    (ans(" 3 "), "3", 1.0),
    ("<think>count</think><answer>\n3\n</answer>", "3", 1.0),  # DOTALL
    (ans("3.0"), "3", 0.0),  # exact strings
    (ans("three"), "3", 0.0),
    ("<think>maybe 3</think><answer>4</answer>", "3", 0.0),  # tagged: no fallback
    ("There are 3 objects in total.", "3", 1.0),  # untagged: verify(parse(completion), parse("3"))
    ("There are 4 objects in total.", "3", 0.0),
]


@pytest.mark.parametrize(("completion", "gt", "want"), COUNTING)
def test_counting(completion: str, gt: str, want: float) -> None:
    assert paper("counting")(completion, {"answer": gt}) == want
    assert default("counting")(completion, {"answer": gt}) == want


MATH = [
    # (completion, ground truth, paper fallback="untagged", default fallback="always")
    (ans("0.5"), "0.5", 1.0, 1.0),
    (ans("1/2"), "0.5", 0.0, 1.0),  # tagged: exact string only in the paper
    (ans("\\frac{1}{2}"), "0.5", 0.0, 1.0),
    (ans("B"), "B", 1.0, 1.0),  # multiple choice: the letter as an exact string
    (ans("(B)"), "B", 0.0, None),
    ("<think>it is 1/2</think><answer>\n0.5\n</answer>", "0.5", 1.0, 1.0),  # DOTALL
    ("so the answer is 1/2", "0.5", 1.0, 1.0),  # untagged: math-verify on the whole completion
    ("so the answer is $\\frac{1}{2}$", "0.5", 1.0, 1.0),
    ("so the answer is 0.6", "0.5", 0.0, 0.0),
]


@pytest.mark.parametrize(("completion", "gt", "want_paper", "want_default"), MATH)
def test_math(completion: str, gt: str, want_paper: float, want_default: float | None) -> None:
    assert paper("math")(completion, {"answer": gt}) == want_paper
    if want_default is not None:
        assert default("math")(completion, {"answer": gt}) == want_default


TOLERANCE = [
    # (completion, ground truth, paper mode="reason_rft", default mode="fixed")
    (ans("0.52"), "0.5", 1.0, 1.0),  # Δ = .02 < ε1·|gt| = .025
    (ans("0.55"), "0.5", 0.75, 0.75),  # ½(cos(π·(.05 − .025)/.075) + 1) = ½(cos(π/3) + 1)
    (ans("0.7"), "0.5", 0.0, 0.0),  # Δ > ε2·|gt|
    (ans("0"), "0", 0.0, 1.0),  # the paper divides 0 by 0 and its except pays 0
    ("0", "0", 1.0, 1.0),  # ... untagged, its math-verify fallback then pays 1
    (ans("1_000"), "1000", 1.0, 0.0),  # Python's float() reads "1_000"
    (ans("nan"), "0.5", 0.0, 0.0),  # kept guard: the paper's reward is NaN
    (ans("inf"), "0.5", 0.0, 0.0),  # Δ = inf > ε2·|gt|
    (ans("abc"), "abc", 1.0, 1.0),  # not numbers: exact string
    (ans("5e-1"), "0.5", 1.0, 1.0),
]


@pytest.mark.parametrize(("completion", "gt", "want_paper", "want_default"), TOLERANCE)
def test_math_tolerance(completion: str, gt: str, want_paper: float, want_default: float) -> None:
    assert paper("math_tolerance")(completion, {"answer": gt}) == pytest.approx(want_paper)
    assert default("math_tolerance")(completion, {"answer": gt}) == pytest.approx(want_default)


# ---- Reason-RFT only_full_func_accuracy_reward (TRANCE) ------------------------------------------

GT_T = "change_color(1, 'red') change_size(2, 'large')"
SPATIAL = [  # the paper's setting is the default mode="exact"
    (ans(GT_T), 1.0),
    (ans("change_size(2, large), change_color(1, red)"), 1.0),  # order and quotes do not matter
    (ans("change_color(1, 'red') change_size(2, 'small')"), 0.5),  # 1 exact · item 1/2
    (ans("change_color(1, 'red') change_color(1, 'red')"), 0.25),  # p = 1/2, item = p / max(1, 2)
    (ans(GT_T + " change_shape(3, 'cube')"), 2 / 3),  # item 1/3
    (ans("nothing"), 0.0),  # no item: the paper divides by zero, its except pays 0
    ("<think>t</think><answer>\nchange_color(1, 'red')\n</answer>", 0.5),  # DOTALL
]


@pytest.mark.parametrize(("completion", "want"), SPATIAL)
def test_spatial_transform(completion: str, want: float) -> None:
    assert paper("spatial_transform")(completion, {"answer": GT_T}) == pytest.approx(want)
    assert default("spatial_transform")(completion, {"answer": GT_T}) == pytest.approx(want)


# ---- any completion: finite and in range ----------------------------------------------------------

FRAGMENTS = ["<think>", "</think>", "<answer>", "</answer>", "\n", " ", "[", "]", "[[", "]]", "{", "}", "},",
             "'", ",", "'Position': ", "'Confidence': ", "[0, 0, 100, 100]", "[100, 100, 0, 0]", "NaN",
             "Infinity", "1e999", "-1", "1.5", "true", "null", "No Objects", "(10,10),(90,90)", "(90,90),(1,1)",
             "(1,1),(99999999999999999999,2)", "change_color(1, 'red')", "3", "0", "1/2", "nan", "1_0", "é"]
text = st.one_of(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join), st.text(max_size=120))
GTS = {"detection": {"boxes": [A, B]}, "grounding": {"box": [10, 10, 90, 90]}}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=text)
def test_paper_settings_are_finite_and_in_range(completion: str) -> None:
    for name, options in PAPER_OPTIONS.items():
        gt = GTS.get(name.split("_")[0], {"answer": "3"})
        for g in (gt, {"boxes": []}) if name.startswith("detection") else (gt,):
            r = verifiers.get_reward(name, **options)(completion, g)
            info = verifiers.reward_info(name)
            assert type(r) is float and math.isfinite(r) and info.low <= r <= info.high, (name, r)
