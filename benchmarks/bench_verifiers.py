"""Verifier throughput.

Prints:
  BENCH verifier_detection_per_s_per_core <n> completions/s   detection_iou, 10 predicted vs 10 GT boxes
  BENCH verifier_math_per_s_per_core <n> completions/s        math, every answer through math-verify
  BENCH verifier_pool_math_per_s <n> completions/s            512 math completions through a
                                                              VerifierPool of 2 actors (end to end,
                                                              wall clock)

The per-core figures run the reward in a loop on this thread and divide by the CPU time of this
process (``time.process_time``), so that other load on a shared machine does not count against them.
Every completion is distinct (math-verify caches parses; repeating strings would flatter it).
"""

from __future__ import annotations

import random
import time

from vrft import verifiers


def _detection_data(n: int, seed: int = 0) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gts = []
        for _ in range(10):
            x, y = rng.randint(0, 850), rng.randint(0, 850)
            gts.append([x, y, x + rng.randint(20, 150), y + rng.randint(20, 150)])
        items = []
        for b in gts:  # the model finds most objects, a bit off, and adds a few false alarms
            if rng.random() < 0.8:
                p = [min(1000, max(0, v + rng.randint(-12, 12))) for v in b]
            else:
                x, y = rng.randint(0, 900), rng.randint(0, 900)
                p = [x, y, x + 60, y + 60]
            p[2], p[3] = max(p[0], p[2]), max(p[1], p[3])
            items.append(f"{{'Position': {p}, 'Confidence': {rng.randint(30, 99) / 100}}}")
        completion = ("<think>I look at the image and find the objects.</think>\n"
                      f"<answer>[{', '.join(items)}]</answer>")
        out.append((completion, {"boxes": gts}))
    return out


def _math_data(n: int, seed: int = 1) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(2, 999)
        kind = i % 4
        if kind == 0:
            gt, pred = f"{a / b:.4f}", f"\\frac{{{a}}}{{{b}}}"
        elif kind == 1:
            gt, pred = f"\\frac{{{a}}}{{{b}}}", f"{a}/{b}"
        elif kind == 2:
            gt, pred = f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"
        else:
            gt, pred = f"{a}", f"{a + rng.randint(1, 9)}.0"  # wrong: math-verify must say no
        out.append((f"<think>compute</think><answer>{pred}</answer>", {"answer": gt}))
    return out


def per_core_rate(fn, data: list[tuple[str, dict]], min_cpu_s: float, passes: int = 3) -> float:
    """Completions per CPU-second, best of ``passes`` passes of at least ``min_cpu_s`` each."""
    best = 0.0
    for _ in range(passes):
        done = 0
        t0 = time.process_time()
        while True:
            for c, gt in data:
                fn(c, gt)
            done += len(data)
            spent = time.process_time() - t0
            if spent >= min_cpu_s:
                break
        best = max(best, done / spent)
    return best


def pool_rate(n: int = 512) -> float | None:
    try:
        import ray
    except ImportError:
        return None
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        data = _math_data(n, seed=7)
        with verifiers.VerifierPool([{"name": "math"}], num_actors=2, batch_size=64) as pool:
            pool.submit("warm", *data[0])  # actors and their scoring processes up, math-verify loaded
            pool.gather(["warm"], timeout=300)
            t0 = time.perf_counter()
            for i, (c, gt) in enumerate(data):
                pool.submit(str(i), c, gt)
            pool.gather([str(i) for i in range(n)], timeout=300)
            return n / (time.perf_counter() - t0)
    finally:
        if started:
            ray.shutdown()


def main() -> None:
    det = verifiers.get_reward("detection_iou")
    data = _detection_data(2000)
    assert 0.3 < sum(det(c, g) for c, g in data) / len(data) < 1.0  # the matching really runs
    print(f"BENCH verifier_detection_per_s_per_core {per_core_rate(det, data, 1.0):.0f} completions/s", flush=True)

    math_fn = verifiers.get_reward("math")
    math_fn(*_math_data(1, seed=99)[0])  # import math-verify/sympy outside the timing
    mdata = _math_data(200)
    print(f"BENCH verifier_math_per_s_per_core {per_core_rate(math_fn, mdata, 0.5, 2):.0f} completions/s",
          flush=True)

    rate = pool_rate()
    if rate is not None:
        print(f"BENCH verifier_pool_math_per_s {rate:.0f} completions/s", flush=True)


if __name__ == "__main__":
    main()
