#!/usr/bin/env python3
"""Shim kept for users of the original tool: `python create_dataset.py --input … --output …`."""

from gedidata.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
