"""Multi-turn rollouts with image tools (rollout/turns.py) on the transformers engine, and the learner
on their trajectories: the sampled ids are kept turn to turn (no re-tokenization), observations are
masked out of the loss (a gradient check), a failing tool is an error observation that is counted,
and a trajectory the turn budget cuts says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from vrft.learner.batch import collate
from vrft.learner.config import LearnerConfig
from vrft.learner.model import sequence_logprobs
from vrft.learner.objective import grpo_objective
from vrft.orchestrator.core.records import to_sample
from vrft.rollout.engine import SamplingParams
from vrft.rollout.hf_engine import TransformersEngine
from vrft.rollout.inputs import build_prompt_inputs
from vrft.rollout.processor import load_processor
from vrft.rollout.tools import AnswerFrame, get_tools
from vrft.rollout.turns import ToolUse, sample_with_tools

CONFIG = Path(__file__).parent.parent / "configs" / "local" / "test_cpu.yaml"


@pytest.fixture(scope="module")
def tool_model(tmp_path_factory) -> str:
    from vrft.testing.tiny_model import make_tiny_model

    return str(make_tiny_model(tmp_path_factory.mktemp("tools") / "tiny", tool_tokens=True))


@pytest.fixture(scope="module")
def processor(tool_model):
    return load_processor(tool_model)


def image() -> Image.Image:
    im = Image.new("RGB", (112, 84), (20, 40, 60))
    im.paste((250, 10, 10), (10, 10, 40, 30))
    return im


def zoom_call(box) -> str:
    return '<think>look</think><tool_call>' + json.dumps({"name": "zoom", "arguments": {"box": box}}) + "</tool_call>"


class Script:
    """A stand-in for an engine's `continue_contexts` that answers each trajectory from a script of
    turns (token ids), recording every context it was given."""

    def __init__(self, turns_per_row: list[list[list[int]]], eos: int):
        self.turns, self.eos, self.contexts = turns_per_row, eos, []
        self.calls = 0

    def __call__(self, contexts, sampling, stop_ids):
        self.contexts.append([list(c.input_ids) for c in contexts])
        out = []
        alive = [row for row, turns in enumerate(self.turns) if len(turns) > self.calls]
        for row in alive[:len(contexts)]:
            ids = self.turns[row][self.calls]
            out.append((ids, [-0.5] * len(ids), ids[-1] in stop_ids))
        self.calls += 1
        return out


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_sampled_ids_are_kept_and_observations_are_masked(processor):
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = build_prompt_inputs(processor, "What colour is the small box?", [image()])
    first = ids_of(tok, zoom_call([0, 0, 500, 500]))
    # The answer sampled letter by letter, a spelling the tokenizer would never produce for a word its
    # BPE merges: decoding and encoding it again gives other ids, so a re-tokenizing loop fails.
    word = next(w for w in ("What colour", "colour", "the", "box") if len(ids_of(tok, w)) < len(w))
    odd = ids_of(tok, "<answer>") + [i for ch in word for i in ids_of(tok, ch)] + ids_of(tok, "</answer>") + [eos]
    assert ids_of(tok, tok.decode(odd)) != odd, "the test needs a non-canonical spelling"
    script = Script([[first, odd]], eos)
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), max_turns=3, max_total_tokens=400)
    [[done]] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=1, max_new_tokens=64),
                                 {eos}, use, policy_version=7)
    traj = done.trajectory
    observation = done.token_ids[len(first):len(done.token_ids) - len(odd)]
    assert done.token_ids[:len(first)] == first and done.token_ids[-len(odd):] == odd
    # the second turn continued exactly from prompt + first turn + observation
    assert script.contexts[1] == [prompt.input_ids + first + observation]
    assert traj.token_mask == [1] * len(first) + [0] * len(observation) + [1] * len(odd)
    # the observation holds the zoomed image: its placeholder tokens marked, its patches carried
    image_pad = tok.convert_tokens_to_ids("<|image_pad|>")
    assert traj.mm_token_type_ids == [int(t == image_pad and m == 0) for t, m in zip(done.token_ids, traj.token_mask, strict=True)]
    assert sum(traj.mm_token_type_ids) == int(traj.image_grid_thw.prod(-1).sum()) // 4 > 0  # merge 2x2
    # [0, 0, 500, 500] of 1000 on 112x84 -> the top-left 56x42
    assert traj.views[1].box_to_original((0, 0, *traj.views[1].size)) == (0, 0, 56, 42)
    assert done.text.startswith("<answer>") and done.finish_reason == "stop" and done.policy_version == 7
    assert [t.error for t in traj.turns] == [None, None] and traj.tool_calls == 1 and traj.turns[0].view == 1
    assert done.logprobs[len(first):len(first) + len(observation)] == [0.0] * len(observation)


def test_a_failing_call_is_an_error_observation_and_the_turn_budget_cuts(processor):
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = build_prompt_inputs(processor, "Where is it?", [image()])
    bad = ids_of(tok, '<tool_call>{"name": "zoom", "arguments": {"box": [1, 2]}}</tool_call>')
    again = ids_of(tok, zoom_call([0, 0, 1000, 1000]))
    script = Script([[bad, again, again]], eos)
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), max_turns=3, max_total_tokens=2000)
    [[done]] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=1), {eos}, use, 0)
    traj = done.trajectory
    assert [t.error for t in traj.turns] == ["bad_arguments", None, None]
    assert traj.tool_errors == 1 and traj.tool_calls == 2  # the cut call was not run
    assert traj.cut_by_turns and done.finish_reason == "length"
    assert traj.turns[-1].observation is None  # the call in the last allowed turn is not run


@pytest.fixture(scope="module")
def engine(tool_model):
    return TransformersEngine(tool_model, tools={"names": ["zoom", "rotate"], "max_turns": 3,
                                                 "max_total_tokens": 600})


def test_the_engine_samples_after_a_zoomed_image_and_the_learner_scores_the_same_trajectory(engine, processor):
    """The real decode continues a context with a second image mid-sequence (its M-RoPE positions from
    the model), and the learner's plain forward over the whole trajectory gives the same log-probs
    on the model's tokens."""
    tok = engine.tokenizer
    prompt = build_prompt_inputs(processor, "What colour is the small box?", [image()])
    call = ids_of(tok, zoom_call([0, 0, 500, 500]))
    real = engine._continue
    turns = []

    def first_scripted(contexts, sampling, stop_ids):
        if not turns:  # the first turn: a zoom call; every later turn: the model itself
            turns.append("scripted")
            return [(call, [0.0] * len(call), True) for _ in contexts]
        return real(contexts, sampling, stop_ids)

    engine._continue = first_scripted
    try:
        [group] = engine.generate([prompt], SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=0))
    finally:
        engine._continue = real
    for done in group:
        traj = done.trajectory
        assert traj.pixel_values is not None and len(traj.views) == 2
        model_tokens = [i for i, m in enumerate(traj.token_mask) if m][len(call):]  # the model's own turns
        assert model_tokens, "the model sampled after the observation"
        sample = to_sample(prompt, done.token_ids, traj, rollout_logprobs=done.logprobs)
        batch = collate([sample], pad_id=engine.pad_id)
        with torch.no_grad():
            logp, _ = sequence_logprobs(engine.model, batch, banned=engine.suppress)
        p = len(prompt.input_ids)
        learner = [float(logp[0, p - 1 + i]) for i in model_tokens]
        engine_side = [done.logprobs[i] for i in model_tokens]
        assert learner == pytest.approx(engine_side, abs=1e-4)


def test_observation_tokens_get_no_gradient(engine, processor):
    tok = engine.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = build_prompt_inputs(processor, "What colour?", [image()])
    script = Script([[ids_of(tok, zoom_call([100, 100, 600, 600])), ids_of(tok, "<answer>red</answer>") + [eos]]],
                    eos)
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), 3, 600)
    [[done]] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=1), {eos}, use, 0)
    sample = to_sample(prompt, done.token_ids, done.trajectory, advantage=1.0)
    batch = collate([sample], pad_id=engine.pad_id)
    logp, _ = sequence_logprobs(engine.model, batch)
    logp.retain_grad()
    ref = logp.detach() - 0.3  # a reference that differs, so the KL term has a gradient everywhere
    loss, _ = grpo_objective(logp, batch, LearnerConfig(beta=0.1), {"tokens": 1.0, "seqs": 1.0}, ref_logp=ref)
    loss.backward()
    p = len(prompt.input_ids)
    grad = logp.grad[0, p - 1:p - 1 + len(done.token_ids)]
    mask = torch.tensor(done.trajectory.token_mask, dtype=torch.bool)
    assert (~mask).sum() > 0 and bool((grad[~mask] == 0).all())
    assert bool((grad[mask] != 0).all())


# ---- the run: config, prompt, rewards, metrics and alarms -------------------------------------------

def test_tool_names_are_checked_when_the_config_loads(tool_model):
    from vrft.orchestrator.config.schema import load_config

    with pytest.raises(ValueError, match="unknown tool 'zooom'") as e:
        load_config(CONFIG, [f"model.path={tool_model}", "rollout.tools={names: [zooom]}"])
    assert "\n" not in str(e.value).strip()


def test_the_prompt_advertises_the_tools(processor):
    from vrft.rollout.inputs import chat_text

    schemas = [t.schema() for t in get_tools(["zoom"]).values()]
    plain = chat_text(processor, "What colour?", 1)
    text = chat_text(processor, "What colour?", 1, tools=schemas)
    assert "<tool_call>" in text and json.dumps(schemas[0], sort_keys=True) in text and "<tool_call>" not in plain
    # a template that renders `tools=` itself is used as it is: no system turn of ours added
    import copy

    own = copy.deepcopy(processor)
    own.chat_template = ("{% if tools %}[{{ tools | length }} tools]{% endif %}"
                         "{% for m in messages %}{{ m['role'] }};{% endfor %}")
    assert chat_text(own, "What colour?", 1, tools=schemas) == "[1 tools]user;"


def test_the_tool_bonus_is_paid_only_with_a_right_answer():
    from vrft.verifiers.composite import CompositeReward

    reward = CompositeReward([{"name": "classification"}, {"name": "tool_bonus", "weight": 0.5,
                                                            "options": {"of": "classification"}}])
    right, wrong = "<think>t</think><answer>red</answer>", "<think>t</think><answer>blue</answer>"

    def truth(calls: int, errors: int = 0) -> dict:
        return {"answer": "red", "trajectory": {"turns": calls + 1, "tool_calls": calls, "tool_errors": errors,
                                                "cut_by_turns": False}}

    assert reward(right, truth(1))["total"] == 1.5
    assert reward(right, truth(0))["total"] == 1.0  # right without looking: no bonus
    assert reward(wrong, truth(2))["total"] == 0.0  # looking without being right: nothing
    assert reward(right, truth(1, errors=1))["tool_bonus"] == 0.0  # only a failed call
    assert reward(right, {"answer": "red"})["tool_bonus"] == 0.0  # one-turn completion


def test_a_grpo_run_with_tools_trains_on_masked_trajectories(ray_cluster, tmp_path, color_data):
    """The whole loop with tools on: a model that always closes a tool call at once (so every call is
    malformed), through Ray, the verifiers and a DeepSpeed learner: each trajectory runs to the turn
    budget, each call is an error observation, the metrics and alarms say so, and it trains."""
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.train.loop import train
    from vrft.testing.tiny_model import make_tiny_model, prefer_token

    path = make_tiny_model(tmp_path / "closer", tool_tokens=True)
    model = AutoModelForImageTextToText.from_pretrained(path)
    prefer_token(model, AutoTokenizer.from_pretrained(path).convert_tokens_to_ids("</tool_call>"))
    model.save_pretrained(path)
    cfg = load_config(CONFIG, [f"model.path={path}", f"data.path={color_data}", "run.steps=2",
                               "rollout.num_workers=1", "verifier.num_actors=1", "learner.world_size=1",
                               "rollout.tools={names: [zoom, rotate], max_turns: 3, max_total_tokens: 200}"])
    train(cfg, tmp_path / "run")
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "step" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["rollout/turns_mean"] == 3.0 and r["rollout/tool_calls_mean"] == 2.0
        assert r["rollout/cut_by_turns_frac"] == 1.0 and r["rollout/tool_errors"] == 2 * 4 * 2  # 2 run per trajectory
        assert r["alarms/classification/invalid_calls"] == 1.0
        assert r["alarms/classification/tool_spam"] == 1.0 and r["alarms/classification/never_looking"] == 0.0
        assert math.isfinite(r["learner/loss"])


def test_the_report_shows_every_turn_with_the_region_looked_at_and_the_new_view(processor, tmp_path):
    """Rollout records keep every turn; the report draws, for a zoom, the region on the view the model
    looked at and then the zoomed view; the page renders in headless Chromium without console errors."""
    import yaml
    from test_observability import chromium, rendered

    from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion
    from vrft.orchestrator.observe.report import build_report
    from vrft.orchestrator.observe.rollout_log import RolloutLog, load_records

    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    big = Image.new("RGB", (224, 168), (230, 230, 230))
    big.paste((200, 20, 20), (150, 100, 170, 116))  # a small red glyph, bottom right
    prompt = build_prompt_inputs(processor, "What colour is the small mark?", [big])
    script = Script([[ids_of(tok, zoom_call([600, 500, 800, 750])), ids_of(tok, "<answer>red</answer>") + [eos]]],
                    eos)
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), 3, 800)
    [[done]] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=1), {eos}, use, 1)
    item = PromptItem(row_id="r0", inputs=prompt, ground_truth={"answer": "red"}, task="classification")
    scored = ScoredCompletion(done, scores={"classification": 1.0, "total": 1.0}, reward=1.0, advantage=0.5)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"run": {"name": "tools", "steps": 1}}))
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward/mean": 1.0, "rollout/turns_mean": 2.0}) + "\n")
    RolloutLog(run_dir, every=1, per_step=1, seed=0, frame="rel1000", processor=processor).write(
        1, [PromptGroup(item, [scored])])

    [turns] = [json.loads(t) for t in load_records(run_dir)["turns"]]
    assert [t["tool"] for t in turns] == ["zoom", None] and turns[0]["look_image"] and turns[0]["view_image"]
    page = build_report(run_dir, tmp_path / "report.html").read_text()
    assert page.count('alt="turn 0 look"') == 1 and page.count('alt="turn 0 view"') == 1
    assert "zoomed in on [600, 500, 800, 750]" in page
    url = (tmp_path / "report.html").resolve().as_uri()
    shown = chromium("--dump-dom", url, tmp=tmp_path)
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line]
    assert shown.returncode == 0 and not console, console
    assert rendered(shown.stdout)["cards"] == "1"
    shot = chromium(f"--screenshot={tmp_path / 'turns.png'}", url + "#task=classification", tmp=tmp_path)
    assert shot.returncode == 0 and (tmp_path / "turns.png").stat().st_size > 10_000


def test_shared_prompt_path_on_trajectories_equals_the_plain_forward(engine, processor):
    """Two trajectories of one prompt with observation images of different sizes and lengths, and a
    one-turn completion of another prompt: the prompt runs once per group, each row's observation
    images in its continuation, with positions over the whole row; log-probs and gradients equal
    the plain forward's."""
    from vrft.learner import shared_prompt as shared
    from vrft.learner.model import load_model

    tok = engine.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = build_prompt_inputs(processor, "What colour is the small box?", [image()])
    answer = ids_of(tok, "<answer>red</answer>") + [eos]
    script = Script([[ids_of(tok, zoom_call([0, 0, 500, 500])), answer],
                     [ids_of(tok, zoom_call([100, 200, 900, 700])), ids_of(tok, "<think>wide</think>") + answer]], eos)
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), 3, 600)
    [pair] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=2), {eos}, use, 0)
    other = build_prompt_inputs(processor, "Name the colour.", [image().rotate(90, expand=True)])
    samples = [to_sample(prompt, c.token_ids, c.trajectory) for c in pair]
    samples.append(to_sample(other, ids_of(tok, "<answer>blue</answer>") + [eos]))
    batch = collate(samples, engine.pad_id)
    assert len(shared.prompt_groups(batch)) == 2 and shared.worth_sharing(batch)
    model = load_model(engine.model.name_or_path, "float32").eval()
    mask = batch["loss_mask"]
    with torch.no_grad():
        plain, _ = sequence_logprobs(model, batch)
        ours, _ = shared.shared_prompt_logprobs(model, batch)
    assert float(((ours - plain).abs() * mask).max()) < 1e-5
    model.train()
    grads = []
    for fn in (sequence_logprobs, shared.shared_prompt_logprobs):
        model.zero_grad()
        (fn(model, batch)[0] * mask).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6), name


def test_vrft_eval_runs_a_benchmark_with_tools(tmp_path):
    """`vrft eval clevr_math --tools zoom`: the engines run multi-turn with the tools, predictions.jsonl
    keeps every turn and metrics.json how the tools were used. A model that closes a call at once (every
    call malformed) runs each query to the turn budget; an unknown tool is one line before any engine."""
    import subprocess
    import sys

    from transformers import AutoModelForImageTextToText, AutoTokenizer

    from vrft.testing.released import make_reason_rft_counting
    from vrft.testing.tiny_model import make_tiny_model, prefer_token

    path = make_tiny_model(tmp_path / "closer", tool_tokens=True)
    model = AutoModelForImageTextToText.from_pretrained(path)
    prefer_token(model, AutoTokenizer.from_pretrained(path).convert_tokens_to_ids("</tool_call>"))
    model.save_pretrained(path)
    counting = make_reason_rft_counting(tmp_path / "counting", n=3)
    base = [sys.executable, "-m", "vrft.orchestrator.cli.main", "eval", "clevr_math", "--model", str(path),
            "--data", str(counting), "--out", str(tmp_path / "eval"), "--no-progress", "--max-new-tokens", "4"]
    refused = subprocess.run([*base, "--tools", "zooom"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "unknown tool 'zooom'" in refused.stderr and "Ray" not in refused.stderr
    proc = subprocess.run([*base, "--tools", "zoom", "--max-turns", "3"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["tools"] == {"names": ["zoom"], "max_turns": 3, "turns_mean": 3.0, "tool_calls_mean": 2.0,
                               "tool_call_rate": 1.0, "tool_errors": 6, "cut_by_turns_frac": 1.0}
    records = [json.loads(line) for line in (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [len(r["turns"]) for r in records] == [3, 3, 3]
    assert all(t["error"] == "invalid_call" for r in records for t in r["turns"][:2])


def test_a_view_the_processor_refuses_is_an_error_observation(processor):
    """A user's tool returning an image the processor cannot take (1 x 300 pixels) fails that call, not
    the engine: the model reads an error observation and the trajectory goes on."""
    from vrft.rollout.tools import Observation as Seen
    from vrft.rollout.tools import View, tool

    @tool("sliver", "a 1-pixel-wide strip", {"type": "object", "properties": {}})
    def sliver(views, arguments, frame):
        return Seen("a strip", View(Image.new("RGB", (1, 300))))

    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = build_prompt_inputs(processor, "What colour?", [image()])
    call = ids_of(tok, '<tool_call>{"name": "sliver", "arguments": {}}</tool_call>')
    script = Script([[call, ids_of(tok, "<answer>red</answer>") + [eos]]], eos)
    use = ToolUse({"sliver": sliver}, AnswerFrame.of_family("qwen2_vl"), 3, 600)
    [[done]] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=1), {eos}, use, 0)
    first = done.trajectory.turns[0]
    assert first.error == "tool_failed" and "cannot be shown" in first.observation
    assert done.finish_reason == "stop" and done.trajectory.pixel_values is None


@pytest.mark.parametrize("masked", [True, False])
def test_a_trajectory_cut_by_the_turn_budget_adds_no_loss_when_asked(processor, tool_model, masked):
    """rollout.tools.mask_cut_by_turns (over-turn masking): the trajectory the budget cut while it still
    called a tool gets weight 0 in the learner's batch, so no loss and no normalising count; the one
    that answered keeps its weight. Off, both train."""
    from vrft.learner.batch import counted
    from vrft.orchestrator.config.schema import load_config
    from vrft.orchestrator.core.records import PromptGroup, PromptItem, ScoredCompletion
    from vrft.orchestrator.train.step import build_batch

    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = build_prompt_inputs(processor, "What colour?", [image()])
    call = ids_of(tok, zoom_call([0, 0, 500, 500]))
    script = Script([[call, call], [call, ids_of(tok, "<answer>red</answer>") + [eos]]], eos)
    use = ToolUse(get_tools(["zoom"]), AnswerFrame.of_family("qwen2_vl"), 2, 600)
    [pair] = sample_with_tools(script, processor, tok, [prompt], SamplingParams(n=2), {eos}, use, 0)
    assert [c.trajectory.cut_by_turns for c in pair] == [True, False]
    cfg = load_config(CONFIG, [f"model.path={tool_model}",
                               f"rollout.tools={{names: [zoom], mask_cut_by_turns: {str(masked).lower()}}}"])
    item = PromptItem(row_id="0", inputs=prompt, ground_truth={"answer": "red"}, task="classification")
    batch = build_batch(cfg, [PromptGroup(item, [ScoredCompletion(c, reward=r) for c, r in zip(pair, (0.0, 1.0),
                                                                                                 strict=True)])])
    assert [s.weight for s in batch.samples] == ([0.0, 1.0] if masked else [1.0, 1.0])
    assert len(counted(batch.samples, mask_truncated=False)) == (1 if masked else 2)
