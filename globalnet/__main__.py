"""`python -m globalnet`: the same as the `gclient` command."""

import sys

from globalnet.cli import main

sys.exit(main())
