"""The run config: its pydantic schema, the checks of a raw YAML, the alarm thresholds it holds.
Imports core only."""
