"""``python -m prepost.cli``."""

import sys

from prepost.cli import main

sys.exit(main())
