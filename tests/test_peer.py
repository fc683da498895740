"""`make bench-peer`'s parts that need no TRL: TRL's side scores with vrft's own rewards (the same
functions as vrft's verifier pool), from TRL's conversational completions or plain strings; and the
timing harness, which stamps both sides' per-step records from outside the same way (a fake run
writes records at known intervals)."""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks.peer_trl import reward_funcs
from vrft.verifiers import get_reward


def test_trl_side_rewards_are_vrfts():
    good, bad = "<think>a</think><answer>blue</answer>", "blue"
    gt = json.dumps({"answer": "blue"})
    classification, fmt = reward_funcs(["classification", "format"])
    assert classification.__name__ == "classification"
    conversational = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": bad}]]
    assert classification(conversational, [gt, gt]) == [get_reward("classification")(t, {"answer": "blue"})
                                                         for t in (good, bad)]
    assert fmt([good, bad], [gt, gt], prompts=None) == [1.0, 0.0]


# ---- the timing harness: both sides' whole step stamped from outside, the same way -------------

CHILD = r"""
import json, sys, time
log = open(sys.argv[1], "a")
def put(text):
    log.write(text)
    log.flush()
put(json.dumps({"step": 0, "eval/x": 1.0}) + "\n")  # a step-0 evaluation: not a step
put(json.dumps({"step": 1}) + "\n")
time.sleep(0.3)
put(json.dumps({"step": 2}) + "\n")
time.sleep(0.6)
put(json.dumps({"step": 3}) + "\n")
time.sleep(0.3)
put('{"step": ')  # half a record: it is stamped when its line ends, not before
time.sleep(0.3)
put('4}\n')
put(json.dumps({"summary": True, "step": 4}) + "\n")
print("PEER {}")
"""


def test_watch_steps_stamps_each_record_as_it_lands(tmp_path):
    from benchmarks.peer import POLL_S, watch_steps, whole_steps

    log = tmp_path / "steps.jsonl"
    stamps, out = watch_steps("fake", [sys.executable, "-c", CHILD, str(log)], log, timeout=60)
    assert out.strip() == "PEER {}"
    assert len(stamps) == 4  # steps 1-4: not the step-0 evaluation, not the summary
    steps = whole_steps(stamps)
    # a stamp can be up to one poll late, never early; the upper bound leaves room for a loaded machine
    for got, slept in zip(steps, [0.3, 0.6, 0.6], strict=True):
        assert slept - POLL_S - 0.01 <= got <= slept + 0.5, (steps, slept)


def test_watch_steps_names_a_failed_run(tmp_path):
    from benchmarks.peer import watch_steps

    with pytest.raises(RuntimeError, match="fake run failed \\(3\\)"):
        watch_steps("fake", [sys.executable, "-c", "import sys; sys.exit(3)"], tmp_path / "x", timeout=60)


def test_both_sides_headline_is_the_whole_step_from_outside(tmp_path, monkeypatch):
    """TRL's and vrft's headline step are the same function of the same stamps; each side's own
    inside figures stay beside it."""
    import benchmarks.peer as peer

    stamps = [0.0, 1.0, 3.0, 6.0, 10.0, 15.0]  # six steps' records landing: steps 2-6 take 1..5 s
    calls = []

    def fake_watch(side, cmd, log, timeout):
        calls.append((side, cmd, log))
        if side == "vrft":  # what the run leaves behind: its own inside timings
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text("".join(json.dumps({
                "step": s, "time/step": 0.5, "time/rollout": 0.2, "time/verify": 0.1, "time/learn": 0.2,
                "response/length_mean": 8.0}) + "\n" for s in range(1, 7)))
            return stamps, ""
        return stamps, "noise\nPEER " + json.dumps({"step_s": [0.5] * 6, "generate_s": [0.3] * 6,
                                                    "reward": [0.0] * 6, "length": [8.0] * 6}) + "\n"

    monkeypatch.setattr(peer, "watch_steps", fake_watch)
    trl = peer.run_trl(tmp_path / "model", tmp_path / "data")
    vrft = peer.run_vrft(tmp_path / "model", tmp_path / "data", tmp_path / "run", [])
    assert trl["whole_s"] == vrft["whole_s"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    # after WARMUP (2) steps: steps 3-6, the same steps `mean` averages the inside figures over
    assert peer.mean_whole(vrft["whole_s"]) == 3.5 and peer.mean(vrft["step_s"]) == 0.5
    (trl_side, trl_cmd, trl_log), (vrft_side, vrft_cmd, vrft_log) = calls
    assert trl_cmd[:3] == [str(peer.TRL_PY), "-m", "benchmarks.peer_trl"]
    assert json.loads(trl_cmd[3])["log"] == str(trl_log)  # TRL writes the file that is watched
    assert vrft_cmd[1:4] == ["-m", "vrft.orchestrator.cli.main", "train"]  # its own process, as TRL's
    assert vrft_log == tmp_path / "run" / "metrics.jsonl"
