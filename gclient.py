#!/usr/bin/env python3
"""Compatibility shim: `python gclient.py ...` = `gclient ...` = `python -m globalnet ...`."""

import sys

import globalnet

globalnet.prepare_node_process()  # before anything imports structlog

from globalnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
