"""Image tools a policy calls mid-answer ("thinking with images"): small pure functions registered by
name, like the rewards, that look at an image again and return what they saw.

A tool is `fn(views, arguments, frame) -> Observation`:
- `views`: every image the model has been shown in this trajectory, the prompt's first, each a `View`
  that knows where it lies in the original image;
- `arguments`: the JSON object of the model's call;
- `frame`: the coordinate frame the model answers boxes in (its family's), so a box argument is read
  exactly as a box answer is: Qwen2-VL and Qwen3-VL in 0-1000 of each side, Qwen2.5-VL in the pixels of
  the image as its processor resized it. Always relative to the image the model is looking at (a crop
  is resized again by the processor, so a box in a crop is in the crop's own frame).

The model calls a tool in Qwen's native format, `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`
(the schemas `Tool.schema()` gives are what a chat template's `tools=` advertises). `run_tool` never
raises: a call it cannot parse, an unknown tool, bad arguments or a tool that fails each become an error
observation the model reads on its next turn, with `Observation.error` naming the kind so the run can
count it.

Why our own crop and frame bookkeeping rather than a peer's zoom tool: the published zoom tools
(DeepEyes arXiv 2505.14362, Mini-o3 arXiv 2509.07969) take a box in the original image's frame and
leave Qwen2.5-VL's resized-pixel frame and crops of crops to the user; here every view carries its
exact map back to the original, so a box the model draws in any view lands on the original's pixels.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vrft.plugins import load_callable, one_line
from vrft.rollout.families import FAMILIES, smart_resize

# (a, b, c, d, e, f): the point (x, y) of one image is (a·x + b·y + c, d·x + e·y + f) of another.
Affine = tuple[float, float, float, float, float, float]
IDENTITY: Affine = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def compose(outer: Affine, inner: Affine) -> Affine:
    """`outer` after `inner`: first map by `inner`, then by `outer`."""
    a, b, c, d, e, f = outer
    p, q, r, s, t, u = inner
    return (a * p + b * s, a * q + b * t, a * r + b * u + c, d * p + e * s, d * q + e * t, d * r + e * u + f)


@dataclass(frozen=True)
class View:
    """An image the model is shown, and where it lies in the original: `to_original` maps a point of
    this image (continuous pixel coordinates, (0, 0) the top-left corner) to the original image's."""

    image: Image.Image
    to_original: Affine = IDENTITY

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size

    def point_to_original(self, x: float, y: float) -> tuple[float, float]:
        a, b, c, d, e, f = self.to_original
        return a * x + b * y + c, d * x + e * y + f

    def box_to_original(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """An xyxy box of this view in the original's pixels (its corners' bounds: views are crops and
        quarter turns, so a box stays a box)."""
        x1, y1, x2, y2 = box
        corners = [self.point_to_original(x, y) for x in (x1, x2) for y in (y1, y2)]
        xs, ys = [p[0] for p in corners], [p[1] for p in corners]
        return min(xs), min(ys), max(xs), max(ys)

    def box_from_original(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """An xyxy box of the original in this view's pixels (the inverse map; what a report draws to
        show which part of this view a later view came from)."""
        a, b, c, d, e, f = self.to_original
        det = a * e - b * d
        inverse: Affine = (e / det, -b / det, (b * f - c * e) / det, -d / det, a / det, (c * d - a * f) / det)
        return View(self.image, inverse).box_to_original(box)

    def crop(self, left: int, top: int, right: int, bottom: int) -> View:
        return View(self.image.crop((left, top, right, bottom)),
                    compose(self.to_original, (1.0, 0.0, float(left), 0.0, 1.0, float(top))))

    def rotate(self, quarter_turns: int) -> View:
        """Turned counter-clockwise by `quarter_turns` × 90° (PIL's ROTATE_90 sense)."""
        w, h = self.size
        turns = quarter_turns % 4
        if turns == 0:
            return self
        # where a point (x', y') of the turned image was in this one
        back: Affine = {1: (0.0, -1.0, float(w), 1.0, 0.0, 0.0),
                        2: (-1.0, 0.0, float(w), 0.0, -1.0, float(h)),
                        3: (0.0, 1.0, 0.0, -1.0, 0.0, float(h))}[turns]
        transpose = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
                     3: Image.Transpose.ROTATE_270}[turns]
        return View(self.image.transpose(transpose), compose(self.to_original, back))


@dataclass(frozen=True)
class AnswerFrame:
    """How the model's box numbers read against the image it looks at. `rel1000`: 0-1000 of each side;
    `resized_pixels`: pixels of the image after the processor's resize (`smart_resize` with these
    settings), so the same box means other pixels in a view of another size."""

    name: str
    factor: int = 28  # patch_size × merge_size
    min_pixels: int = 56 * 56
    max_pixels: int = 28 * 28 * 1280

    @classmethod
    def of_family(cls, family: str, **processor: int) -> AnswerFrame:
        """The frame of a family (rollout/families.py), with the run's processor settings where given
        (`patch_size`, `merge_size`, `min_pixels`, `max_pixels`) else the family's released ones."""
        fam = FAMILIES.get(family)
        if fam is None:
            raise ValueError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
        patch, merge = processor.get("patch_size", fam.patch_size), processor.get("merge_size", fam.merge_size)
        return cls(fam.answer_frame, patch * merge, processor.get("min_pixels", fam.min_pixels),
                   processor.get("max_pixels", fam.max_pixels))

    def units(self, size: tuple[int, int]) -> tuple[int, int]:
        """The frame's extent along x and y for a view of `size` (width, height): 1000 each, or the
        resized width and height."""
        w, h = size
        if self.name == "rel1000":
            return 1000, 1000
        if self.name == "resized_pixels":
            rh, rw = smart_resize(h, w, self.factor, self.min_pixels, self.max_pixels)
            return rw, rh
        raise ValueError(f"unknown answer frame {self.name!r} (known: rel1000, resized_pixels)")

    def to_view_pixels(self, box: Sequence[float], size: tuple[int, int]) -> tuple[float, float, float, float]:
        # multiplied before divided: a box that lands on whole pixels lands on them exactly in floats
        (w, h), (uw, uh) = size, self.units(size)
        x1, y1, x2, y2 = box
        return x1 * w / uw, y1 * h / uh, x2 * w / uw, y2 * h / uh

    def from_view_pixels(self, box: Sequence[float], size: tuple[int, int]) -> tuple[float, float, float, float]:
        (w, h), (uw, uh) = size, self.units(size)
        x1, y1, x2, y2 = box
        return x1 * uw / w, y1 * uh / h, x2 * uw / w, y2 * uh / h


@dataclass(frozen=True)
class Observation:
    """What a tool returns: text for the model's next turn, and a new view to show (None: text only).
    `error`: the kind of failure (invalid_call, unknown_tool, bad_arguments, tool_failed) or None."""

    text: str
    view: View | None = None
    error: str | None = None


class ToolArgumentError(ValueError):
    """A tool's arguments are not what its schema says (the model's mistake, shown to it)."""


ToolFn = Callable[[Sequence[View], Mapping[str, Any], AnswerFrame], Observation]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    fn: ToolFn = field(repr=False)

    def __call__(self, views: Sequence[View], arguments: Mapping[str, Any], frame: AnswerFrame) -> Observation:
        return self.fn(views, arguments, frame)

    def schema(self) -> dict[str, Any]:
        """The function schema chat templates advertise (transformers' `apply_chat_template(tools=...)`)."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def tool(name: str, description: str, parameters: dict[str, Any]) -> Callable[[ToolFn], Tool]:
    """Make a `Tool` of a function; a user's own tool module does the same and is named in the config
    as "package.module:attribute"."""
    def make(fn: ToolFn) -> Tool:
        return Tool(name, description, parameters, fn)
    return make


_IMAGE_ARG = {"type": "integer", "description": "which image to act on, 0 the first shown; default the last"}


def target_view(views: Sequence[View], arguments: Mapping[str, Any]) -> View:
    """The view a call acts on: `arguments["image"]` (0 the prompt's image) or the last one shown."""
    if not views:
        raise ToolArgumentError("there is no image to act on")
    index = arguments.get("image", len(views) - 1)
    if isinstance(index, bool) or not isinstance(index, int) or not -len(views) <= index < len(views):
        raise ToolArgumentError(f"image must be an index below {len(views)}, got {index!r}")
    return views[index]


@tool("zoom", "Crop the image to a box and look at it closer; the box is [x1, y1, x2, y2] in the same "
      "coordinates as your box answers, on the image you are looking at.",
      {"type": "object", "properties": {"box": {"type": "array", "items": {"type": "number"},
                                               "minItems": 4, "maxItems": 4}, "image": _IMAGE_ARG},
       "required": ["box"]})
def zoom(views: Sequence[View], arguments: Mapping[str, Any], frame: AnswerFrame) -> Observation:
    """The crop of the view to `box` (in `frame`, on that view), grown outward to whole pixels, so the
    region asked for is always inside what is shown; the new view maps back exactly by what was cut."""
    view = target_view(views, arguments)
    box = arguments.get("box")
    if (not isinstance(box, list | tuple) or len(box) != 4
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
        raise ToolArgumentError(f"box must be four numbers [x1, y1, x2, y2], got {one_line(box, 80)}")
    w, h = view.size
    x1, y1, x2, y2 = frame.to_view_pixels(box, view.size)
    left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
    right, bottom = min(w, math.ceil(x2)), min(h, math.ceil(y2))
    if right - left < 1 or bottom - top < 1:
        raise ToolArgumentError(f"box {list(box)} holds no pixel of the {w}x{h} image")
    try:  # what the processor will refuse to show (a sliver over 200 times longer than wide)
        smart_resize(bottom - top, right - left, frame.factor, frame.min_pixels, frame.max_pixels)
    except ValueError as e:
        raise ToolArgumentError(f"box {list(box)}: {e}") from None
    crop = view.crop(left, top, right, bottom)
    return Observation(f"zoomed in on {list(box)}", crop)


@tool("rotate", "Turn the image counter-clockwise by 90, 180 or 270 degrees.",
      {"type": "object", "properties": {"angle": {"type": "integer", "enum": [90, 180, 270]}, "image": _IMAGE_ARG},
       "required": ["angle"]})
def rotate(views: Sequence[View], arguments: Mapping[str, Any], frame: AnswerFrame) -> Observation:
    """Quarter turns only: they keep every pixel and keep a box a box, so the map back stays exact."""
    view = target_view(views, arguments)
    angle = arguments.get("angle")
    if angle not in (90, 180, 270) or isinstance(angle, bool):
        raise ToolArgumentError(f"angle must be 90, 180 or 270, got {one_line(angle, 40)}")
    return Observation(f"rotated by {angle} degrees", view.rotate(angle // 90))


BUILTIN_TOOLS: dict[str, Tool] = {t.name: t for t in (zoom, rotate)}


def get_tools(names: Sequence[str]) -> dict[str, Tool]:
    """The tools a config names: built-in names, or "package.module:attribute" holding a `Tool`.
    Every problem is a one-line error, raised at config load (before any model loads)."""
    tools: dict[str, Tool] = {}
    for name in names:
        if name in BUILTIN_TOOLS:
            found = BUILTIN_TOOLS[name]
        elif ":" in name:
            found = load_callable(name, f"tool {name!r}")
            if not isinstance(found, Tool):
                raise ValueError(f"tool {name!r}: must be a vrft.rollout.tools.Tool (make it with @tool(...))")
        else:
            raise ValueError(f"unknown tool {name!r} (built in: {', '.join(BUILTIN_TOOLS)}; "
                             "a user's own: 'package.module:attribute')")
        if found.name in tools:
            raise ValueError(f"two tools are named {found.name!r}")
        tools[found.name] = found
    return tools


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]


TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CALL_CLOSE) + r"|\Z)", re.DOTALL)


def find_tool_call(turn: str) -> str | None:
    """The body of the turn's last `<tool_call>` (its close tag may be cut by the stop string), or None
    when the turn calls no tool."""
    bodies = _CALL.findall(turn)
    return bodies[-1] if bodies else None


def parse_tool_call(body: str) -> ToolCall:
    """`{"name": str, "arguments": {...}}`, as Qwen's chat templates write a call; a one-line
    ToolArgumentError otherwise."""
    try:
        call = json.loads(body)
    except ValueError as e:
        raise ToolArgumentError(f"the tool call is not JSON: {one_line(e, 120)}") from None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise ToolArgumentError('a tool call is {"name": ..., "arguments": {...}}')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some templates write the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise ToolArgumentError("the tool call's arguments are not a JSON object") from None
    if not isinstance(arguments, dict):
        raise ToolArgumentError("the tool call's arguments are not a JSON object")
    return ToolCall(call["name"], arguments)


def run_tool(body: str, views: Sequence[View], frame: AnswerFrame, tools: Mapping[str, Tool]) -> Observation:
    """The observation for one call's body. Never raises: a failure is an error observation whose text
    tells the model what went wrong and whose `error` names the kind for the run's counters."""
    try:
        call = parse_tool_call(body)
    except ToolArgumentError as e:
        return Observation(f"error: {e}", error="invalid_call")
    found = tools.get(call.name)
    if found is None:
        return Observation(f"error: no tool named {call.name!r} (tools: {', '.join(tools)})", error="unknown_tool")
    try:
        observation = found(views, call.arguments, frame)
    except ToolArgumentError as e:
        return Observation(f"error: {e}", error="bad_arguments")
    except Exception as e:  # noqa: BLE001 - a user's tool failing is the model's observation, not the run's end
        return Observation(f"error: tool {call.name!r} failed: {one_line(repr(e), 200)}", error="tool_failed")
    if not isinstance(observation, Observation):
        return Observation(f"error: tool {call.name!r} returned {type(observation).__name__}, not an Observation",
                           error="tool_failed")
    return observation
