"""CLI commands: report."""

from __future__ import annotations
