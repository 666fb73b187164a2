"""Allow ``python -m specops`` as an alias of the ``specops`` console script."""

from specops.cli import main

raise SystemExit(main())
