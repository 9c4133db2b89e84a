"""The base of servetune's own errors: one class that the command line turns into a one-line message.

A stage raises a subclass whose message names the file, option or thing at fault and the problem; the
command line prints `error: MESSAGE` and exits with the class's `exit_code`, never with a traceback.
"""

from __future__ import annotations


class ServetuneError(Exception):
    """Input or a situation servetune cannot work with; `str(error)` is the whole message for the user."""

    exit_code = 2  # bad input, like a bad command-line option


class FailedError(ServetuneError):
    """The input was fine but the system it drives failed (a cluster refused a request, replicas died)."""

    exit_code = 1


def first_line(err: BaseException) -> str:
    """The first line of an exception's text (its class name when it has none), for a one-line message."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
