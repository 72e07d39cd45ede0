"""`qulab`, the command line: one subcommand per module, each with `register(commands,
common)` adding its parser (with the shared connection and output flags) and setting
`run`, which returns the exit status. To add a subcommand, write such a module and list
it in `_COMMANDS`.

    qulab molecule "CC(=O)Oc1ccccc1C(=O)O"
    qulab molecule compounds.csv --output parsed.jsonl
    qulab structure cifs/ --format csv -o cells.csv
    qulab convert 500 nm 1/cm
    qulab mcp                      # QuLab's tools for an MCP client, on stdio
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Sequence

from qulab.cli import _health, _mcp, _molecule, _spectrum, _structure, _units
from qulab.cli._common import ExitCode, UsageError, address_of, common_flags, exit_code_for
from qulab.cli._output import describe
from qulab.client import __version__
from qulab.client.errors import QulabError

__all__ = ["EPILOG", "main"]

_COMMANDS = (_molecule, _structure, _spectrum, _units, _health, _mcp)

EPILOG = """\
connection: --address, else $QULAB_ADDRESS, else localhost:50051. Credentials and TLS come
from the flags, else from $QULAB_API_KEY, $QULAB_BEARER_TOKEN, $QULAB_TLS, $QULAB_CA_FILE,
$QULAB_CLIENT_CERT_FILE, $QULAB_CLIENT_KEY_FILE and $QULAB_TLS_SERVER_NAME.

output: readable lines on stdout; --json gives one JSON object per item on stdout and
nothing else; --output FILE writes JSON lines or CSV. Failures are reported on stderr,
one line per item, and the run goes on. The progress bar is drawn on stderr, only when it
is a terminal.

exit status (the most serious that applies; 4 > 3 > 5 > 1):
  0    every item OK
  1    some items failed as bad input (INVALID_ARGUMENT and the like); the others were
       processed and written
  2    usage error: bad flags, a missing file, an unknown CSV column
  3    server unreachable or unavailable: UNAVAILABLE (also the client's open circuit),
       DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, health not SERVING
  4    UNAUTHENTICATED or PERMISSION_DENIED
  5    another server error: INTERNAL, UNKNOWN, UNIMPLEMENTED, ...
  130  interrupted; 141: stdout was closed early (as by `| head`)
UNAVAILABLE, UNAUTHENTICATED and PERMISSION_DENIED stop a run at once; the items written
before stay written.
"""


def _parser() -> argparse.ArgumentParser:
    common = common_flags()
    parser = argparse.ArgumentParser(
        prog="qulab",
        description="Call a QuLab server from the command line.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"qulab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(commands, common)
    for sub in commands.choices.values():
        # Raw, to keep the epilog's table; so the description is wrapped here.
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        sub.description = textwrap.fill(sub.description or "", width=88)
        sub.epilog = EPILOG
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `qulab` with these arguments (default: the process's) and return its exit
    status."""
    args = _parser().parse_args(argv)
    try:
        status: ExitCode = args.run(args)
    except UsageError as error:
        print(f"qulab {args.command}: error: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except QulabError as error:
        status = exit_code_for(error)
        where = f" (server {address_of(args)})" if status is ExitCode.UNAVAILABLE else ""
        print(f"qulab: {describe(error)}{where}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print("qulab: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (`qulab ... | head`): stop quietly, and keep the
        # interpreter from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.BROKEN_PIPE
    return int(status)
