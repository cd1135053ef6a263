"""`python -m teststand.app.cli`: the same as the `teststand` command."""

from teststand.app.cli import main

raise SystemExit(main())
