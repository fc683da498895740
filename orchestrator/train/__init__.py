"""The training run: pre-flight checks, the GRPO loop and one step, the async schedule,
engine/learner parity, checkpoints and export. Imports the layers below it."""
