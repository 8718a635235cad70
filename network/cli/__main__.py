"""``python -m network.cli``: the same as the ``libhub`` command."""

import sys

from network.cli.main import main

sys.exit(main())
