"""`gclient site sign DIR [--name NAME] [--data-dir DIR]`: sign a folder as a site, offline.

Prints the site's address and sequence number. Signing the same content again
keeps the sequence number; changed content raises it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import describe_os_error
from .manifest import SiteError
from .store import sign_folder


def site_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="gclient site",
        description="Signed sites: a folder of files signed by the site's key, served by mirrors that cannot alter it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser("sign", help="sign FOLDER as a site (the key is created on first use)")
    sign.add_argument("folder", type=Path, help="the site's files, e.g. ./www")
    sign.add_argument("--name", help="the site's name in the data dir (default: the folder's name)")
    sign.add_argument("--data-dir", "-data-dir", type=Path,
                      default=Path(os.environ.get("GNET_DATA_DIR", Path.home() / ".globalnet")),
                      help="where the key and manifest are kept: DATA_DIR/sites/NAME/ (default ~/.globalnet)")
    args = parser.parse_args(argv)
    name = (args.name or args.folder.resolve().name).lower()
    try:
        signed = sign_folder(args.data_dir, name, args.folder)
    except SiteError as exc:
        print(f"gclient site: {exc.detail}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gclient site: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    m = signed.manifest
    state = "signed" if signed.changed else "unchanged"
    print(f"{signed.address}\nsite {name}: {state}, seq {m.seq}, {len(m.files)} files, {m.total_size} bytes")
    return 0
