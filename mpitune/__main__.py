"""``python -m mpitune SPEC`` (under mpiexec or srun, or alone for a serial search)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
