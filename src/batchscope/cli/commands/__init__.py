"""The CLI's commands, one module each; importing this package registers them all.

The import order is the order ``batchscope --help`` lists them in.
"""

# isort: skip_file
# ruff: noqa: I001, F401
from batchscope.cli.commands import demo, sweep, workloads, env, peak
from batchscope.cli.commands import runs, show, export, report, compare
from batchscope.cli.commands import fit, maxbs, noise, watch
