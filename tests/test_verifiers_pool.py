"""VerifierPool on a real local Ray cluster: results equal direct scoring, hard timeouts, crashing and
raising rewards, killed actors (every completion scored exactly once), and 10,000 random and
adversarial completions."""

from __future__ import annotations

import importlib
import math
import os
import random
import signal
import time

import pytest
import ray

from vrft import verifiers

pytestmark = pytest.mark.integration

PLUGINS = (f"{__package__}." if __package__ else "") + "test_verifiers_plugins"
plugins = importlib.import_module(PLUGINS)


def det(boxes: list, conf: float = 0.9) -> str:
    body = ", ".join(f"{{'Position': {b}, 'Confidence': {conf}}}" for b in boxes)
    return f"<think>t</think><answer>[{body}]</answer>"


def test_pool_needs_ray() -> None:
    if ray.is_initialized():
        pytest.skip("Ray already running in this process")
    with pytest.raises(RuntimeError, match=r"ray\.init"):
        verifiers.VerifierPool([{"name": "format"}])


def test_bad_config_fails_before_any_actor(ray_cluster) -> None:
    with pytest.raises(ValueError, match="detection_iuo"):
        verifiers.VerifierPool([{"name": "format"}, {"name": "detection_iuo"}])


def test_pool_equals_direct_scoring_and_gather_semantics(ray_cluster) -> None:
    specs = [verifiers.RewardSpec(name=n) for n in ("detection_iou", "detection_confidence", "format")]
    specs.append(verifiers.RewardSpec(name="format", weight=0.5))
    direct = verifiers.CompositeReward(specs)
    rng = random.Random(0)
    data = {}
    for i in range(200):
        gt = {"boxes": [[rng.randint(0, 400), rng.randint(0, 400), rng.randint(500, 1000), rng.randint(500, 1000)]
                        for _ in range(rng.randint(0, 3))]}
        data[f"k{i}"] = (det([[v + rng.randint(-30, 30) for v in b] for b in gt["boxes"]], rng.random()), gt)
    with verifiers.VerifierPool(specs, num_actors=2) as pool:
        for k, (c, gt) in data.items():
            pool.submit(k, c, gt)
        with pytest.raises(ValueError, match="already submitted"):
            pool.submit("k0", "x", {"boxes": []})
        first = pool.gather([f"k{i}" for i in range(100)])
        rest = pool.gather([f"k{i}" for i in range(100, 200)])
        with pytest.raises(KeyError):
            pool.gather(["k0"])  # each key is returned exactly once
        with pytest.raises(KeyError):
            pool.gather(["never"])
        got = {**first, **rest}
        assert got == {k: direct(c, gt) for k, (c, gt) in data.items()}
        assert set(got["k0"]) == {"detection_iou", "detection_confidence", "format", "format#2", "total"}
        s = pool.stats()
        assert s["verifier/scored"] == 200 and s["verifier/timeouts"] == 0 and s["verifier/errors"] == 0


def test_hard_timeout_for_python_c_and_regex_hangs(ray_cluster) -> None:
    specs = [{"name": f"{PLUGINS}:misbehave"}, {"name": "format"}]
    hangs = ["HANG_PY", "HANG_REGEX", "HANG_SLEEP"]
    with verifiers.VerifierPool(specs, num_actors=2, timeout_s=1.0) as pool:
        keys = []
        for i, c in enumerate(["ok", *hangs, "ok", "<think>a</think><answer>b</answer>"] * 2):
            pool.submit(f"{i}", c, {})
            keys.append((f"{i}", c))
        t0 = time.monotonic()
        got = pool.gather([k for k, _ in keys], timeout=60)
        elapsed = time.monotonic() - t0
        s = pool.stats()
    for k, c in keys:
        if c in hangs:
            assert got[k] == {f"{PLUGINS}:misbehave": 0.0, "format": 0.0, "total": 0.0}
        else:  # the rest of each batch went on, on a fresh child process
            assert got[k][f"{PLUGINS}:misbehave"] == 0.5
    assert got["5"]["format"] == 1.0
    assert s["verifier/timeouts"] == 6 and s["verifier/process_restarts"] >= 6
    assert s["verifier/max_score_s"] < 1.5  # the kill comes at the deadline
    assert elapsed < 30


def test_raising_nan_and_dying_rewards_never_crash_the_pool(ray_cluster) -> None:
    specs = [{"name": f"{PLUGINS}:misbehave"}, {"name": "format"}, {"name": "detection_iou"}]
    with verifiers.VerifierPool(specs, num_actors=1, timeout_s=5.0) as pool:
        cases = ["RAISE", "NAN", "STRING", "EXIT", "fine"]
        for c in cases:
            pool.submit(c, c, {"boxes": []})
        pool.submit("bad_gt", "fine", {"no": "boxes"})  # a built-in given a malformed ground truth
        got = pool.gather([*cases, "bad_gt"], timeout=60)
        s = pool.stats()
        errors = pool.recent_errors()
    for c in ("RAISE", "NAN", "STRING", "EXIT"):
        assert got[c][f"{PLUGINS}:misbehave"] == 0.0
    assert got["fine"][f"{PLUGINS}:misbehave"] == 0.5
    assert got["bad_gt"] == {f"{PLUGINS}:misbehave": 0.5, "format": 0.0, "detection_iou": 0.0, "total": 0.5}
    assert s["verifier/errors"] == 5 and s["verifier/process_restarts"] == 1
    assert any("boom" in e for e in errors) and any("died" in e for e in errors)


@pytest.mark.parametrize("how", ["ray_kill", "sigkill"])
def test_killed_actor_mid_batch_loses_nothing_and_counts_nothing_twice(ray_cluster, how: str) -> None:
    specs = [{"name": f"{PLUGINS}:slow_echo", "options": {"delay": 0.02}}]
    n = 120
    with verifiers.VerifierPool(specs, num_actors=2, timeout_s=5.0, batch_size=16) as pool:
        victim = pool.actors()[0]
        pid = ray.get(victim.pids.remote())["actor"]
        for i in range(n):
            pool.submit(f"c{i}", "x", {"value": i})
        deadline = time.monotonic() + 30
        while pool.stats()["verifier/scored"] < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.stats()["verifier/pending"] > 20  # mid-run: work is in flight on the victim
        if how == "ray_kill":
            ray.kill(victim, no_restart=True)
        else:
            os.kill(pid, signal.SIGKILL)
        got = pool.gather([f"c{i}" for i in range(n)], timeout=120)
        s = pool.stats()
    assert sorted(got) == sorted(f"c{i}" for i in range(n))
    assert all(got[f"c{i}"][f"{PLUGINS}:slow_echo"] == float(i) for i in range(n))  # no mix-ups
    assert s["verifier/scored"] == n  # counted once each, re-scored ones included
    assert s["verifier/restarts"] == 1 and s["verifier/resubmitted"] >= 1
    assert s["verifier/errors"] == 0 and s["verifier/timeouts"] == 0


def test_wedged_actor_is_replaced_by_the_watchdog(ray_cluster) -> None:
    specs = [{"name": f"{PLUGINS}:echo_value"}]
    with verifiers.VerifierPool(specs, num_actors=2, timeout_s=1.0, batch_size=4) as pool:
        pool._watchdog_base_s, pool._watchdog_item_s = 2.0, 0.0  # instead of minutes
        pid = ray.get(pool.actors()[0].pids.remote())["actor"]
        os.kill(pid, signal.SIGSTOP)  # alive but never answers: no actor error will come
        try:
            for i in range(40):
                pool.submit(f"w{i}", "x", {"value": i})
            got = pool.gather([f"w{i}" for i in range(40)], timeout=120)
            s = pool.stats()
        finally:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert all(got[f"w{i}"][f"{PLUGINS}:echo_value"] == float(i) for i in range(40))
    assert s["verifier/scored"] == 40 and s["verifier/restarts"] >= 1 and s["verifier/resubmitted"] >= 1


# ---- 10,000 random and adversarial completions ---------------------------------------------------


def adversarial(rng: random.Random, i: int) -> str:
    kind = i % 20
    if kind == 0:
        return "".join(chr(rng.randint(1, 0x10FFFF)) for _ in range(rng.randint(0, 300)))  # incl. surrogates
    if kind == 1:
        return "<answer>" + "\ud800" * rng.randint(1, 50) + "\udfff</answer>"  # lone surrogates
    if kind == 2:
        return "<think>" + "</think><answer>" * rng.randint(100, 4000)  # bait for the format regex
    if kind == 3:
        return "<answer>" + "[" * rng.randint(100, 20000) + "]" * rng.randint(0, 20000) + "</answer>"
    if kind == 4:
        return "a" * rng.randint(1000, 50000) + "(" + "<answer>" * 100  # bait for the TRANCE regex
    if kind == 5:
        return "<answer>(" + " " * 5000 + "1" * rng.randint(1, 5000) + ",</answer>"  # grounding regex
    if kind == 6 and i % 1000 == 6:
        return "x" * rng.choice([300_000, 1_500_000])  # huge strings (a few)
    if kind == 7:
        items = []
        for _ in range(rng.randint(0, 30)):
            pos = [rng.choice([rng.randint(-50, 1100), "NaN", "Infinity", "1e999", "'7'", "true", "null"])
                   for _ in range(rng.choice([3, 4, 4, 4, 5]))]
            conf = rng.choice([rng.random(), "NaN", -1, 2, "'high'", "Infinity"])
            items.append(f"{{'Position': [{', '.join(map(str, pos))}], 'Confidence': {conf}}}")
        text = "[" + ", ".join(items) + "]"
        return "<think>x</think><answer>" + text[: rng.randint(0, len(text))] + rng.choice(["", "</answer>"])
    if kind == 8:
        return f"<think>x</think><answer>({rng.randint(0, 10**12)},{rng.randint(0, 999)}),(5,{rng.randint(0, 999)})</answer>"
    if kind == 9:
        return "<answer>" + " ".join(f"change_{rng.choice(['color', 'size'])}({rng.randint(0, 9)}, 'red')"
                                     for _ in range(rng.randint(0, 200))) + "</answer>"
    if kind == 10:
        return "<answer>" + rng.choice(["\\frac{1}{2}", "B", "(B) or (C)", "three", "3.0", "nan", "-inf",
                                        "\\sqrt{2}^{\\sqrt{2}}", "x^2+1=0", "{{{{", "1/0", ""]) + "</answer>"
    if kind == 11:
        return "{" * rng.randint(1, 5000) + "'Position': [" * rng.randint(1, 300)
    parts = ["<think>", "</think>", "<answer>", "</answer>", "[", "]", "{", "}", "'Position': [1, 2, 3, 4]",
             "'Confidence': 0.5", ",", "No Objects", "(1,2),(3,4)", "A", "\n", " ", "\\", "$"]
    return "".join(rng.choice(parts) for _ in range(rng.randint(0, 60)))


def test_ten_thousand_adversarial_completions(ray_cluster) -> None:
    # Every reward; math-verify runs once per completion (math), not three times (counting's and
    # math_tolerance's fallbacks run the same code), to keep the test near a minute on two cores.
    names = [n for n in verifiers.list_rewards() if n not in ("math", "math_tolerance", "counting")]
    specs = [{"name": n} for n in names] + [
        {"name": "counting", "options": {"fallback": False, "numeric": True}},
        {"name": "math", "options": {"timeout_s": 2.0}},
    ]
    gt = {"boxes": [[0, 0, 100, 100], [200, 200, 300, 300]], "box": [0, 0, 100, 100], "answer": "B"}
    ranges = {n: (verifiers.reward_info(n).low, verifiers.reward_info(n).high)
              for n in [*names, "counting", "math"]}
    rng = random.Random(1234)
    n = 10_000
    t0 = time.monotonic()
    with verifiers.VerifierPool(specs, num_actors=2, timeout_s=5.0, batch_size=64) as pool:
        for i in range(n):
            pool.submit(f"a{i}", adversarial(rng, i), gt)
        got = pool.gather([f"a{i}" for i in range(n)], timeout=300)
        s = pool.stats()
    elapsed = time.monotonic() - t0
    assert len(got) == n and s["verifier/scored"] == n
    assert s["verifier/timeouts"] == 0 and s["verifier/errors"] == 0 and s["verifier/restarts"] == 0
    assert s["verifier/max_score_s"] < 5.0
    for scores in got.values():
        for name, (lo, hi) in ranges.items():
            assert lo <= scores[name] <= hi and math.isfinite(scores[name])
    print(f"10k adversarial completions: {elapsed:.1f} s, max {s['verifier/max_score_s']:.3f} s each")


def test_pool_routes_each_completion_to_its_own_composition(ray_cluster) -> None:
    """Several compositions by route name (the orchestrator's tasks): each completion is scored by
    the one its route names, and a route the pool does not know scores 0 as an error."""
    plugin = f"{PLUGINS}:echo_value"
    pool = verifiers.VerifierPool({"a": [{"name": "format"}], "b": [{"name": plugin, "weight": 2.0}]}, num_actors=1)
    try:
        good = "<think>t</think><answer>x</answer>"
        pool.submit(("x", 0), good, {"value": 5.0}, route="a")
        pool.submit(("x", 1), good, {"value": 5.0}, route="b")
        pool.submit(("x", 2), good, {"value": 5.0}, route="c")
        got = pool.gather([("x", 0), ("x", 1), ("x", 2)])
    finally:
        pool.shutdown()
    assert got[("x", 0)] == {"format": 1.0, "total": 1.0}
    assert got[("x", 1)] == {plugin: 5.0, "total": 10.0}
    assert got[("x", 2)] == {"total": 0.0}
