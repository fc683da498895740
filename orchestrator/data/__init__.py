"""Rows in, prompts out: dataset readers, the prompt source of a run, `vrft check-data`'s row
checks, `vrft prepare-data`'s builders. Imports core and config."""
