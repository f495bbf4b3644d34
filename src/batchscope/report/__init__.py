"""Reports: terminal tables, Markdown, and machine-readable exports."""
