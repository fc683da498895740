"""What a run shows: metric tracking (console, JSONL, wandb), reward-hacking alarms, rollout
records and the HTML report. Imports core and config."""
