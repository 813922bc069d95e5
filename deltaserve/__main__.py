"""`python -m deltaserve ...`: the `deltaserve` command (the console script calls the same `main`)."""

import sys

from deltaserve.cli import main

sys.exit(main())
