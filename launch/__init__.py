"""Launchers that start `gen.main` runs: `python -m launch.sweep` (one run per override set)."""
