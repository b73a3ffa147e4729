"""`python -m redrive`: see redrive.cli."""

import sys

from redrive.cli import main

sys.exit(main())
