"""vrft.orchestrator: the run around the three packages (rollout, learner, verifiers), in layers,
each a sub-package that imports only those below it (tests/test_layers.py holds the order):

    core ← config ← data, runtime, observe ← evaluation ← train ← cli

docs/architecture.md gives each layer in one line."""
