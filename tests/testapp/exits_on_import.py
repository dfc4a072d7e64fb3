"""A module that ends the process when imported, as a badly written middleware module
can (the audit must say so in one line, not end with its status and no word)."""

import sys

sys.exit(3)
