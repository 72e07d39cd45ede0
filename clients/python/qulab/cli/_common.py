"""What every subcommand shares: the exit codes, usage errors, and the connection flags
that become a `Client` (flags over `QULAB_*` variables over defaults)."""

from __future__ import annotations

import argparse
import enum
import os
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2

from qulab.client import DEFAULT_TIMEOUT_S, Client, Credentials
from qulab.client.errors import QulabError, Unavailable

__all__ = [
    "DEFAULT_ADDRESS",
    "ExitCode",
    "UsageError",
    "address_of",
    "common_flags",
    "connect",
    "connection_of",
    "exit_code_for",
    "require_serving",
    "status_name",
    "stops_the_run",
    "timeout_of",
    "worst",
]

DEFAULT_ADDRESS = "localhost:50051"


class ExitCode(enum.IntEnum):
    """The process's exit status; `EPILOG` in `qulab.cli` documents it for people."""

    OK = 0
    ITEMS_FAILED = 1  # some inputs were refused; the rest were processed
    USAGE = 2  # bad flags, a missing file, an unknown column (argparse's own code too)
    UNAVAILABLE = 3  # unreachable, unavailable, over capacity or out of time
    AUTH = 4  # unauthenticated or not allowed
    SERVER_ERROR = 5  # any other server fault (INTERNAL, UNKNOWN, UNIMPLEMENTED, ...)
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    BROKEN_PIPE = 141  # stdout's reader went away (`qulab ... | head`), as shells report SIGPIPE


# When several apply, the most serious one is the run's status.
_SEVERITY = [
    ExitCode.OK,
    ExitCode.ITEMS_FAILED,
    ExitCode.SERVER_ERROR,
    ExitCode.UNAVAILABLE,
    ExitCode.AUTH,
    ExitCode.USAGE,
    ExitCode.BROKEN_PIPE,
    ExitCode.INTERRUPTED,
]

_INPUT_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
}
_UNAVAILABLE_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_AUTH_CODES = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
# Errors that would fail every remaining item the same way: the run stops at the first.
_RUN_STOPPERS = {grpc.StatusCode.UNAVAILABLE, *_AUTH_CODES}


class UsageError(Exception):
    """The command line (or a file it names) cannot be used; exit status 2."""


def exit_code_for(error: QulabError) -> ExitCode:
    code = error.code()
    if code in _INPUT_CODES:
        return ExitCode.ITEMS_FAILED
    if code in _UNAVAILABLE_CODES:
        return ExitCode.UNAVAILABLE
    if code in _AUTH_CODES:
        return ExitCode.AUTH
    return ExitCode.SERVER_ERROR


def stops_the_run(error: QulabError) -> bool:
    """Whether a failed item means the server cannot answer any other item either
    (UNAVAILABLE, including an open circuit; UNAUTHENTICATED; PERMISSION_DENIED)."""
    return error.code() in _RUN_STOPPERS


def worst(*codes: ExitCode) -> ExitCode:
    return max(codes, key=_SEVERITY.index)


def common_flags() -> argparse.ArgumentParser:
    """Connection and output flags, accepted before or after the subcommand. Their
    defaults are SUPPRESS so that a subcommand's parser does not overwrite a value given
    before it; `connect` and the commands apply the real defaults."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection (flags override QULAB_* variables)")
    group.add_argument(
        "--address",
        default=argparse.SUPPRESS,
        metavar="HOST:PORT",
        help=f"the server (default: $QULAB_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    group.add_argument(
        "--api-key",
        default=argparse.SUPPRESS,
        metavar="KEY",
        help="API key (default: $QULAB_API_KEY; prefer the variable, a flag's value is "
        "visible in the process list)",
    )
    group.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        metavar="JWT",
        help="bearer token (default: $QULAB_BEARER_TOKEN)",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=argparse.SUPPRESS,
        help="use TLS with the system's roots (default: $QULAB_TLS; implied by the file flags)",
    )
    group.add_argument(
        "--ca-file",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="CA to check the server against (default: $QULAB_CA_FILE)",
    )
    group.add_argument(
        "--cert-file",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="client certificate for mTLS (default: $QULAB_CLIENT_CERT_FILE)",
    )
    group.add_argument(
        "--key-file",
        default=argparse.SUPPRESS,
        metavar="PEM",
        help="its private key (default: $QULAB_CLIENT_KEY_FILE)",
    )
    group.add_argument(
        "--server-name",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help="name to check the server's certificate against (default: $QULAB_TLS_SERVER_NAME)",
    )
    group.add_argument(
        "--allow-plaintext",
        action="store_true",
        default=argparse.SUPPRESS,
        help="send a key or token without TLS to a host other than this one (only where "
        "the network is protected another way)",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"deadline of each call and of the first contact (default: {DEFAULT_TIMEOUT_S:g})",
    )
    shown = common.add_argument_group("output")
    shown.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="one JSON object per item on stdout (proto3 JSON mapping), nothing else",
    )
    shown.add_argument(
        "--no-progress",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bar (it is only ever drawn on stderr, and only on a terminal)",
    )
    return common


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0: {text!r}")
    return value


def timeout_of(args: argparse.Namespace) -> float:
    timeout: float = getattr(args, "timeout", DEFAULT_TIMEOUT_S)
    return timeout


def connect(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Client:
    """A client for the server the flags and the environment name."""
    address, credentials = connection_of(args, environ)
    return Client(address, timeout=timeout_of(args), credentials=credentials)


def connection_of(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[str, Credentials]:
    """The server's address and the credentials for it, checked: the flags are laid over
    the environment and read by `Credentials.from_environment`, so both spell the same
    settings the same way. UsageError when they cannot be used."""
    env = dict(os.environ if environ is None else environ)
    overrides = {
        "QULAB_API_KEY": getattr(args, "api_key", None),
        "QULAB_BEARER_TOKEN": getattr(args, "token", None),
        "QULAB_TLS": "1" if getattr(args, "tls", False) else None,
        "QULAB_CA_FILE": getattr(args, "ca_file", None),
        "QULAB_CLIENT_CERT_FILE": getattr(args, "cert_file", None),
        "QULAB_CLIENT_KEY_FILE": getattr(args, "key_file", None),
        "QULAB_TLS_SERVER_NAME": getattr(args, "server_name", None),
    }
    env.update({k: v for k, v in overrides.items() if v is not None})
    address = address_of(args, env)
    try:
        credentials = Credentials.from_environment(env)
        if getattr(args, "allow_plaintext", False):
            credentials = credentials | Credentials(allow_plaintext=True)
        credentials.check_target(address)
    except OSError as error:  # a CA, certificate or key file that cannot be read
        raise UsageError(f"cannot read {error.filename}: {error.strerror}") from None
    except ValueError as error:  # credentials that do not go together, or plaintext secrets
        raise UsageError(str(error)) from None
    return address, credentials


def address_of(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> str:
    """--address, else $QULAB_ADDRESS, else localhost:50051."""
    env = os.environ if environ is None else environ
    address: str = getattr(args, "address", None) or env.get("QULAB_ADDRESS") or DEFAULT_ADDRESS
    return address


def require_serving(client: Client, timeout: float) -> None:
    """Check, within `timeout`, that the server answers and says SERVING: a stream has no
    deadline of its own, so an address that swallows packets must fail here."""
    status = client.health(timeout=timeout)
    if status != health_pb2.HealthCheckResponse.SERVING:
        raise Unavailable(f"the server's health check says {status_name(status)}")


def status_name(status: int) -> str:
    """A grpc.health.v1 ServingStatus's name (its number, if this client does not know it)."""
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))
    except ValueError:
        return str(status)
