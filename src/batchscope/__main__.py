"""``python -m batchscope``."""

from batchscope.cli.app import main

main()
