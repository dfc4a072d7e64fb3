"""``python -m hopwatch``: the command line (see hopwatch.cli); Django is not imported."""

import sys

from hopwatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
