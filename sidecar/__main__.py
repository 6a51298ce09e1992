"""`python -m sidecar` is `strata-sidecar`."""

import sys

from sidecar.cli import main

sys.exit(main())
