"""``python -m spp_search``: the same command line as ``spp-search`` and ``python study.py``."""

import sys

from spp_search.cli import main

if __name__ == "__main__":
    sys.exit(main())
