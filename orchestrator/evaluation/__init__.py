"""Paper benchmarks run on the rollout engines, with each paper's protocol, for `vrft eval` and
between training steps. Imports the layers below it."""
