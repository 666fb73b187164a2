"""``python -m specops.podrunner``: see :mod:`specops.podrunner.cli`."""

from specops.podrunner.cli import main

raise SystemExit(main())
