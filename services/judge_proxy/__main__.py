"""``python -m services.judge_proxy``: serve the judge proxy (see cli.py)."""

from services.judge_proxy.cli import main

raise SystemExit(main())
