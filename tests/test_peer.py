"""`make bench-peer`'s parts that need no TRL: TRL's side scores with vrft's own rewards (the same
functions as vrft's verifier pool), from TRL's conversational completions or plain strings."""

from __future__ import annotations

import json

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
