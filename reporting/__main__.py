"""`python -m reporting`: see reporting/cli.py."""

import sys

from reporting.cli import main

sys.exit(main())
