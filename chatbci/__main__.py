"""``python -m chatbci`` is the ``chatbci`` command."""

import sys

from .cli import main

sys.exit(main())
