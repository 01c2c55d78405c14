"""The Python baseline of bench/processors.ts: a processor's function called directly, in a loop,
on the same image bytes the platform would send, timed inside Python.

    python bench/processors/direct.py SCRIPT LIST [--wait | --pull]

SCRIPT is a processor written with the SDK (its @processor function is called, not run());
LIST is a file of image paths, one a line (a path may repeat). Every file is read into memory and
the function is called once on the first (a warm-up, as the platform's processes are warm) before
the clock starts. With --wait it prints "ready" and starts on a line from stdin, so two copies
can start together. With --pull it prints "ready" and then calls the function on each index into
LIST read from stdin, one a line, answering "next" after each, until stdin ends: copies sharing
one queue, as a command processor's processes do. Prints {"n", "seconds", "perImageMs",
"cpuSeconds"} as JSON on stdout (with --pull, seconds from the first index to the end of stdin).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

from imagelake.cli import request_for
from imagelake.core import Result, get_processor


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    script, listing = args
    loader = importlib.util.spec_from_file_location("bench_processor", script)
    module = importlib.util.module_from_spec(loader)  # type: ignore[arg-type]
    loader.loader.exec_module(module)  # type: ignore[union-attr]
    function = get_processor().function

    paths = [line for line in Path(listing).read_text().splitlines() if line]
    cache: dict[str, tuple[bytes, dict]] = {}
    calls = []
    for path in paths:
        if path not in cache:
            data = Path(path).read_bytes()
            cache[path] = (data, request_for(path, data))
        calls.append(cache[path])

    def call(data: bytes, info: dict) -> None:
        returned = function(data, info)
        if not isinstance(returned, (dict, Result)):
            raise TypeError(f"process() returned {type(returned).__name__}")

    call(*calls[0])
    if "--pull" in sys.argv:
        print("ready", flush=True)
        line = sys.stdin.readline()
        cpu = time.process_time()
        started = time.perf_counter()
        done = 0
        while line.strip():
            call(*calls[int(line)])
            done += 1
            print("next", flush=True)
            line = sys.stdin.readline()
    else:
        if "--wait" in sys.argv:
            print("ready", flush=True)
            sys.stdin.readline()
        cpu = time.process_time()
        started = time.perf_counter()
        for data, info in calls:
            call(data, info)
        done = len(calls)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    result = {"n": done, "seconds": seconds, "perImageMs": seconds * 1000 / max(1, done), "cpuSeconds": cpu}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
