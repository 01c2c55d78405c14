"""python -m imagelake SCRIPT [ARGS...]

Runs a processor script the way `python SCRIPT [ARGS...]` would, except that
stdout is taken for the protocol before the script is even imported, so a
print() at import time (of the script or of a library it loads) cannot corrupt
the stdio protocol. The script's own `if __name__ == "__main__": run()` serves
the processor; a script without one is served once it has loaded.
"""

from __future__ import annotations

import os
import runpy
import sys

from . import cli
from .stdio import claim_stdin, claim_stdout


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    script, args = argv[0], argv[1:]
    if not os.path.isfile(script):
        print(f"imagelake: no such script: {script}", file=sys.stderr)
        sys.exit(2)
    mode = cli.mode_of(args)
    if mode in ("stdio", "test"):
        claim_stdout()
    if mode == "stdio":
        claim_stdin()
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    if not cli.ran():
        cli.run()


if __name__ == "__main__":
    main()
