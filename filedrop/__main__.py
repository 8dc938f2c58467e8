"""``python -m filedrop``: the same as the ``filedrop`` command."""

import sys

from filedrop.cli import main

sys.exit(main())
