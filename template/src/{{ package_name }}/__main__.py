"""``python -m <package>``: the service's command line (see cli.py)."""

from .cli import main

raise SystemExit(main())
