"""`python -m bench`: the one entry point (see bench/run.py)."""

import sys

from bench import PROJECT_ROOT

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.run import main

raise SystemExit(main())
