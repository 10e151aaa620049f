"""``python -m exporter``: the same as the ``ams-exporter`` console script."""

from exporter.cli import main

raise SystemExit(main())
