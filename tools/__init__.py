"""Command-line tools around gen runs (FID weights conversion, quality over seeds)."""
