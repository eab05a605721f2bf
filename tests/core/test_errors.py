"""sufra.core.errors: which failures a retry can fix (is_retryable), and one-line permanent errors."""

import errno
import socket

import pytest

from sufra.core.errors import (
    AccessDeniedError,
    CatalogError,
    ModelUnavailableError,
    NetworkUnavailableError,
    PermanentError,
    SufraError,
    is_no_network,
    is_retryable,
)


class _SaysRetryable(Exception):
    retryable = True


class _SaysPermanent(Exception):
    retryable = False


@pytest.mark.parametrize(
    "exc, retryable",
    [
        (TimeoutError("read timed out"), True),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), True),
        (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), True),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), True),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), True),
        (_SaysRetryable(), True),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), False),
        (OSError(errno.EHOSTUNREACH, "No route to host"), False),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), False),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), False),  # offline, in practice
        (FileNotFoundError(errno.ENOENT, "No such file"), False),
        (NetworkUnavailableError("engine bing: www.bing.com does not resolve"), False),
        (AccessDeniedError("engine flickr: api.flickr.com refused access (401)"), False),
        (ModelUnavailableError("checkpoint 'x.pth' does not exist"), False),
        (PermanentError("no"), False),
        (SufraError("unknown engine 'bingo'"), False),
        (CatalogError("egypt.yaml: dish 'x': no queries"), False),
        (_SaysPermanent(), False),
        (ValueError("a bug"), False),
        (RuntimeError("a bug"), False),
    ],
)
def test_is_retryable(exc, retryable):
    assert is_retryable(exc) is retryable


def test_permanent_errors_are_one_line_sufra_errors():
    for cls in (PermanentError, NetworkUnavailableError, AccessDeniedError, ModelUnavailableError):
        error = cls("engine bing:\n   www.bing.com does not resolve\t(Name or service not known)")
        assert isinstance(error, SufraError) and error.retryable is False and error.exit_code == 2
        assert str(error) == "engine bing: www.bing.com does not resolve (Name or service not known)"
    assert issubclass(ModelUnavailableError, PermanentError)  # missing weights are never retried


def test_is_no_network():
    assert is_no_network(OSError(errno.ENETUNREACH, "Network is unreachable"))
    assert is_no_network(OSError(errno.ENETDOWN, "Network is down"))
    assert not is_no_network(ConnectionResetError(errno.ECONNRESET, "reset"))
    assert not is_no_network(ValueError("x"))
