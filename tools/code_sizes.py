"""The largest modules and functions of a package (lines, docstrings and comments included).

Usage: python tools/code_sizes.py [PACKAGE_DIR] [--modules N] [--functions N]
Modules over ~500 lines and functions over ~80 are the ones to split (issue 10).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def module_sizes(root: Path) -> list[tuple[int, str]]:
    return sorted(((len(p.read_text().splitlines()), str(p)) for p in root.rglob("*.py")), reverse=True)


def function_sizes(root: Path) -> list[tuple[int, str]]:
    """Every function and method, nested ones too, with its qualified name."""
    found: list[tuple[int, str]] = []

    def walk(node: ast.AST, path: Path, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    size = (child.end_lineno or child.lineno) - child.lineno + 1
                    found.append((size, f"{path}:{child.lineno} {name}"))
                walk(child, path, name + ".")

    for path in root.rglob("*.py"):
        walk(ast.parse(path.read_text()), path, "")
    return sorted(found, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="globalnet", type=Path)
    parser.add_argument("--modules", type=int, default=15)
    parser.add_argument("--functions", type=int, default=15)
    args = parser.parse_args()
    print(f"largest modules of {args.package} (lines):")
    for size, name in module_sizes(args.package)[: args.modules]:
        print(f"  {size:5d}  {name}")
    print("largest functions (lines):")
    for size, name in function_sizes(args.package)[: args.functions]:
        print(f"  {size:5d}  {name}")


if __name__ == "__main__":
    main()
