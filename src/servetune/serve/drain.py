"""uvicorn's server, except that a SIGTERM it has drained ends the process with status 0.

uvicorn re-raises the signal it caught once it has shut down, so a clean drain after SIGTERM ends with
status 143 (killed by SIGTERM). Kubernetes and gunicorn read that as a failure; a container that stopped
as asked should exit 0. SIGINT is still re-raised (Ctrl-C ends with KeyboardInterrupt, status 130).
"""

from __future__ import annotations

import signal
from collections.abc import Generator
from contextlib import contextmanager

import uvicorn


class DrainingServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            yield
            self._captured_signals = [sig for sig in self._captured_signals if sig != signal.SIGTERM]
