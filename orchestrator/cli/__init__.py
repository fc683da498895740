"""The `vrft` command and its sub-commands, the paper-row recipes of `vrft reproduce`. The top
layer: nothing of orchestrator imports it."""
