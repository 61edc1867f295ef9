#!/usr/bin/env python
"""spp-search: why do Spatial Pyramid Pooling models fail to train, and what trains best?

    python study.py --trials 50                   # run or resume the default study
    python study.py --config experiments/X.yaml   # another experiment
    python study.py export-best --out best.yaml   # the best configuration, complete
    mlflow ui --backend-store-uri sqlite:///mlflow.db

See README.md; ``python study.py --help`` lists every option.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

from spp_search.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
