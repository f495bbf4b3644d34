"""``python -m batchscope``."""

from .cli import main

main()
