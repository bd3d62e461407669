"""``python -m k8s_otel``: the same as the ``k8s-otel`` command."""

import sys

from k8s_otel.cli import main

sys.exit(main())
