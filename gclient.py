#!/usr/bin/env python3
"""Compatibility shim: `python gclient.py ...` = `gclient ...` = `python -m globalnet ...`."""

import sys

from globalnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
