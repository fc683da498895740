"""Where the run's processes live: Ray start-up and placement, the CPU layout, the rollout worker
and learner groups as the driver sees them, fault handling. Imports core and config."""
