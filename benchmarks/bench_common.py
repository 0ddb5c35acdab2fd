"""What every bench script shares: a free loopback port and one percentile definition.

Imported by the scripts as a sibling module (``python benchmarks/bench_x.py`` puts this
folder first on ``sys.path``).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Sequence


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile (q in [0, 1]): always one of ``values``, never interpolated."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
