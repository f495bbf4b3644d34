"""CLI commands: memory."""

from __future__ import annotations
