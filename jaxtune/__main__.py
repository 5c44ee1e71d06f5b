"""`python -m jaxtune`: the same as the `jaxtune` console script."""

import sys

from jaxtune.cli import main

sys.exit(main())
