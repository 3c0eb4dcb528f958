"""`python -m gedidata` runs the command line."""

from gedidata.cli import main

raise SystemExit(main())
