"""`python -m globalnet`: the same as the `gclient` command."""

import sys

import globalnet

globalnet.prepare_node_process()  # before anything imports structlog

from globalnet.cli import main

sys.exit(main())
