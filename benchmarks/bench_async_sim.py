"""SIM async_sim_speedup: sync over async run time of the loop's own scheduling on simulated
engines and learner with fixed per-token costs on separate resources (benchmarks/async_sim.py).

Equal generate and learn costs bound the speedup by 2; a small weight-sync cost per step and the
first step (nothing to overlap yet) keep it below. This is the case async is for (engines and
learner on their own devices); bench_async.py measures the opposite, both on the same 2 cores.
Every figure here is simulated (or, `async_sim_limit`, worked from the costs), so each prints as a
`SIM` line, never `BENCH` (docs/measurements.md).
"""

from __future__ import annotations

from benchmarks.async_sim import Costs, limit, speedup

STEPS = 50


def main() -> None:
    equal = Costs(tokens_per_step=4096, gen_s_per_token=1e-3, learn_s_per_token=1e-3, sync_s=0.02)
    ratio, _, run = speedup(equal, STEPS, max_staleness=1)
    print(f"SIM async_sim_speedup {ratio:.3f} x")
    print(f"SIM async_sim_limit {limit(equal):.3f} x")
    print(f"SIM async_sim_max_staleness {max(run.staleness)} versions")
    # Unequal phases: the limit is (g + l) / max(g, l); two engines halve generation.
    skewed = Costs(tokens_per_step=4096, gen_s_per_token=2e-3, learn_s_per_token=1e-3, sync_s=0.02, engines=2)
    ratio2, _, _ = speedup(skewed, STEPS, max_staleness=2)
    print(f"SIM async_sim_speedup_2engines_staleness2 {ratio2:.3f} x")
    gen_heavy = Costs(tokens_per_step=4096, gen_s_per_token=3e-3, learn_s_per_token=1e-3, sync_s=0.02)
    ratio3, _, _ = speedup(gen_heavy, STEPS, max_staleness=1)
    print(f"SIM async_sim_speedup_gen3x {ratio3:.3f} x (limit {limit(gen_heavy):.3f})")


if __name__ == "__main__":
    main()
