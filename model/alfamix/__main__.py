"""``python -m model.alfamix``: the offline CLI (see model/alfamix/cli.py)."""

import sys

from model.alfamix.cli import main

sys.exit(main())
