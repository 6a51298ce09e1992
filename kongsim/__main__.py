"""``python -m kongsim``: see :mod:`kongsim.cli`."""

import sys

from kongsim.cli import main

sys.exit(main())
