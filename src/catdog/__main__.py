"""Allow `python -m catdog ...`."""

from catdog.cli import main

raise SystemExit(main())
