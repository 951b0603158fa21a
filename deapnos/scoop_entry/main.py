"""What ``deapnos run --backend scoop`` hands to ``python -m scoop``: SCOOP imports this file on
every worker (the import of :mod:`deapnos.run` prepares the worker) and runs it as ``__main__`` on
the root, which runs the search."""
from deapnos.distributed import under_scoop
from deapnos.run import main

if __name__ == "__main__":
    _rc = main()
    if not under_scoop():     # under SCOOP a SystemExit shows up as a worker traceback; status.json tells
        raise SystemExit(_rc)
