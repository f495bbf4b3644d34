"""CLI commands grouped by area; each module adds its commands to ``batchscope.cli.app.app``."""
