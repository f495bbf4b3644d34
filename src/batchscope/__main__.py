"""``python -m batchscope``."""

from batchscope.cli.main import main

main()
