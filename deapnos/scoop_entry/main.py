"""What ``deapnos run --backend scoop`` hands to ``python -m scoop``: SCOOP imports this file on
every worker (the import of :mod:`deapnos.scoop_entry` prepares the worker) and runs it as
``__main__`` on the origin, which runs the search."""
from deapnos.scoop_entry import run_entry

if __name__ == "__main__":
    run_entry()
