"""The run's vocabulary, imported by every layer above: the prompt-group records, the task records,
prompt templates, answer frames, ground-truth parsing and box helpers. Imports no other layer."""
