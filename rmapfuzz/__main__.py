"""``python -m rmapfuzz``: the same as the ``rmapfuzz`` command."""

import sys

from rmapfuzz.cli import main

sys.exit(main())
