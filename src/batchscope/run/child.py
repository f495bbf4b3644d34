"""Entry point of a trial's child process: ``python -m batchscope.run.child FD``.

Reads a JSON request on stdin, writes JSON-line events to file descriptor FD
(never to stdout, which belongs to the user's code), and exits. The parent
classifies whatever happens here, a crash or a kill included.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from typing import Any


def main(argv: list[str]) -> int:
    fd = int(argv[1])
    channel = os.fdopen(fd, "w", buffering=1)
    lock = threading.Lock()  # the hardware sampler's thread emits too

    def emit(event: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"event": event, **payload}) + "\n"
        with lock:
            channel.write(line)

    request = json.loads(sys.stdin.read())
    from batchscope.run import isolation as runner

    try:
        if request["kind"] == "probe":
            probed = runner.probe_in_process(
                request["workload"], request["options"], request.get("framework", "torch")
            )
            emit("probe", probed)
        else:
            from batchscope.core.plan import TrialSpec

            spec = TrialSpec.from_dict(request["spec"])
            trial = runner.run_in_process(spec, progress=emit, in_child=True)
            emit("result", {"trial": trial.to_dict()})
    except Exception as exc:  # user errors during a probe are reported, not crashed on
        from batchscope.errors import BatchscopeError

        traceback.print_exc()
        kind = "user" if isinstance(exc, BatchscopeError) else "exception"
        emit(
            "error",
            {"kind": kind, "message": str(exc) or type(exc).__name__, "type": type(exc).__name__},
        )
        channel.flush()
        return 1
    channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
