"""Image tools (rollout/tools.py): a box drawn in any view, in each family's answer frame, lands on
the original image's pixels exactly; quarter turns map back; a failing call is an error observation.

Expected regions are worked by hand in the comments (not with the module's own arithmetic), and each
is checked twice: the view's map back, and the pixels themselves against a crop of the original.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from vrft.rollout.tools import AnswerFrame, Observation, View, find_tool_call, get_tools, run_tool


def original(width: int = 1600, height: int = 1200) -> Image.Image:
    """Every pixel different (x in red/green low bits, y in blue/green high bits), so a crop can only
    equal the region it came from."""
    x = np.arange(width)[None, :].repeat(height, 0)
    y = np.arange(height)[:, None].repeat(width, 1)
    rgb = np.stack([x % 256, (x // 256) * 16 + y // 256, y % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def call(name: str, **arguments) -> str:
    import json

    return json.dumps({"name": name, "arguments": arguments})


TOOLS = get_tools(["zoom", "rotate"])


def zoom_twice(family: str, first: list[float], second: list[float]) -> tuple[Image.Image, View]:
    image = original()
    frame = AnswerFrame.of_family(family)
    views = [View(image)]
    for box in (first, second):
        observation = run_tool(call("zoom", box=box), views, frame, TOOLS)
        assert observation.error is None, observation.text
        views.append(observation.view)
    return image, views[-1]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_a_zoom_in_a_zoom_maps_back_exactly_in_the_0_1000_frame(family):
    # 1600x1200: [600, 500, 700, 650] of 1000 -> x 960..1120, y 600..780 (a 160x180 crop);
    # in that crop [250, 500, 500, 1000] -> x 40..80, y 90..180 -> original x 1000..1040, y 690..780.
    image, view = zoom_twice(family, [600, 500, 700, 650], [250, 500, 500, 1000])
    assert view.size == (40, 90)
    assert view.box_to_original((0, 0, 40, 90)) == (1000, 690, 1040, 780)
    assert view.image.tobytes() == image.crop((1000, 690, 1040, 780)).tobytes()


def test_a_zoom_in_a_zoom_maps_back_exactly_in_qwen2_5_vl_resized_pixels():
    # Qwen2.5-VL's processor (factor 28, max 1,003,520 pixels) resizes 1600x1200 to 1148x840:
    # beta = sqrt(1,920,000 / 1,003,520) = 1.3832; floor(1600/1.3832/28)*28 = 41*28 = 1148,
    # floor(1200/1.3832/28)*28 = 30*28 = 840. Box [574, 420, 861, 588] there: x 574/1148 = 1/2 -> 800,
    # 861/1148 = 3/4 -> 1200; y 420/840 -> 600, 588/840 = 0.7 -> 840: a 400x240 crop.
    # The crop resizes to 392x252 (round(400/28) = 14, round(240/28) = 9 patches of 28): box
    # [98, 126, 196, 252] -> x 100..200, y 120..240 of the crop -> original x 900..1000, y 720..840.
    image, view = zoom_twice("qwen2_5_vl", [574, 420, 861, 588], [98, 126, 196, 252])
    assert view.size == (100, 120)
    assert view.box_to_original((0, 0, 100, 120)) == (900, 720, 1000, 840)
    assert view.image.tobytes() == image.crop((900, 720, 1000, 840)).tobytes()


def test_a_box_between_pixels_is_grown_outward_and_the_map_is_by_what_was_cut():
    # rel1000 on 1600x1200: [100.1, 100.1, 200.1, 200.1] -> x 160.16..320.16, y 120.12..240.12;
    # grown to whole pixels: x 160..321, y 120..241.
    image = original()
    observation = run_tool(call("zoom", box=[100.1, 100.1, 200.1, 200.1]), [View(image)],
                           AnswerFrame.of_family("qwen2_vl"), TOOLS)
    assert observation.view.box_to_original((0, 0, *observation.view.size)) == (160, 120, 321, 241)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_a_quarter_turn_maps_every_pixel_back(angle):
    image = original(64, 48)
    turned = run_tool(call("rotate", angle=angle), [View(image)], AnswerFrame("rel1000"), TOOLS).view
    assert turned.size == ((48, 64) if angle in (90, 270) else (64, 48))
    src, dst = np.asarray(image), np.asarray(turned.image)
    for y in range(turned.size[1]):
        for x in range(turned.size[0]):
            ox, oy = turned.point_to_original(x + 0.5, y + 0.5)  # pixel centres
            assert (dst[y, x] == src[int(oy), int(ox)]).all(), (angle, x, y)


def test_zoom_after_a_turn_lands_on_the_original():
    # 64x48 turned 90 degrees counter-clockwise is 48x64; a point (x', y') of it was (64 - y', x').
    # Its pixels x 10..20, y 30..50 came from x 64-50..64-30 = 14..34, y 10..20 of the original.
    image = original(64, 48)
    views = [View(image)]
    views.append(run_tool(call("rotate", angle=90), views, AnswerFrame("rel1000"), TOOLS).view)
    # in rel1000 of a 48x64 view: x 10/48*1000, y 30/64*1000 ...; use pixels through the frame's inverse
    frame = AnswerFrame("rel1000")
    box = frame.from_view_pixels((10, 30, 20, 50), views[-1].size)
    crop = run_tool(call("zoom", box=list(box)), views, frame, TOOLS).view
    assert crop.box_to_original((0, 0, *crop.size)) == pytest.approx((14, 10, 34, 20), abs=1e-9)
    expected = image.crop((14, 10, 34, 20)).transpose(Image.Transpose.ROTATE_90)
    assert crop.image.tobytes() == expected.tobytes()


@pytest.mark.parametrize(("body", "kind"), [
    ("{not json", "invalid_call"),
    ('{"arguments": {}}', "invalid_call"),
    (call("teleport"), "unknown_tool"),
    (call("zoom", box=[1, 2, 3]), "bad_arguments"),
    (call("zoom", box=[1001, 1001, 1200, 1200]), "bad_arguments"),
    (call("zoom", box=[0, 0, 10, 10], image=5), "bad_arguments"),
    (call("rotate", angle=45), "bad_arguments"),
])
def test_a_bad_call_is_an_error_observation_never_an_exception(body, kind):
    observation = run_tool(body, [View(original(32, 32))], AnswerFrame("rel1000"), TOOLS)
    assert observation.error == kind and observation.view is None
    assert observation.text.startswith("error: ") and "\n" not in observation.text


def test_a_users_tool_loads_by_module_path_and_its_failure_is_counted(tmp_path, monkeypatch):
    (tmp_path / "my_tools.py").write_text(
        "import numpy as np\nfrom vrft.rollout.tools import Observation, tool\n"
        "@tool('brightness', 'mean brightness', {'type': 'object', 'properties': {}})\n"
        "def brightness(views, arguments, frame):\n"
        "    return Observation(str(int(np.asarray(views[-1].image.convert('L')).mean())))\n"
        "@tool('broken', 'always fails', {'type': 'object', 'properties': {}})\n"
        "def broken(views, arguments, frame):\n"
        "    raise RuntimeError('disk on fire')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    tools = get_tools(["zoom", "my_tools:brightness", "my_tools:broken"])
    views = [View(Image.new("L", (32, 32), 200).convert("RGB"))]
    assert run_tool(call("brightness"), views, AnswerFrame("rel1000"), tools) == Observation("200")
    failed = run_tool(call("broken"), views, AnswerFrame("rel1000"), tools)
    assert failed.error == "tool_failed" and "disk on fire" in failed.text
    sys.modules.pop("my_tools", None)


@pytest.mark.parametrize(("names", "message"), [
    (["zooom"], "unknown tool 'zooom'"),
    (["no_such_module_xyz:fn"], "cannot import 'no_such_module_xyz'"),
    (["zoom", "zoom"], "two tools are named 'zoom'"),
])
def test_a_bad_tool_name_is_a_one_line_error(names, message):
    with pytest.raises(ValueError, match=message) as e:
        get_tools(names)
    assert "\n" not in str(e.value)


def test_a_tool_schema_is_a_function_schema_with_its_arguments():
    schema = TOOLS["zoom"].schema()
    assert schema["type"] == "function" and schema["function"]["name"] == "zoom"
    assert schema["function"]["parameters"]["required"] == ["box"]


def test_a_call_cut_by_the_stop_string_still_parses():
    turn = '<think>look closer</think><tool_call>{"name": "zoom", "arguments": {"box": [1, 2, 3, 4]}}'
    assert find_tool_call(turn) == '{"name": "zoom", "arguments": {"box": [1, 2, 3, 4]}}'
    assert find_tool_call("<answer>3</answer>") is None


def test_a_box_the_processor_could_not_show_is_refused():
    # 1600x1200 in 0-1000: [0, 0, 1000, 1] is 1600x2 pixels, an aspect ratio of 800 (the processor's
    # limit is 200): refused as the model's bad arguments, not a crash of the engine
    observation = run_tool(call("zoom", box=[0, 0, 1000, 1]), [View(original())], AnswerFrame.of_family("qwen2_vl"),
                           TOOLS)
    assert observation.error == "bad_arguments" and "aspect ratio" in observation.text
