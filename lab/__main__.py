"""`python -m lab up|down|status|bench`."""

import sys

from lab.cli import main

sys.exit(main())
