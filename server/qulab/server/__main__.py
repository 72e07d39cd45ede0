"""`qulab-server`: start the QuLab gRPC server with settings from QULAB_* variables."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from qulab.server._version import __version__
from qulab.server.config import Settings, SettingsError, settings_table

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="qulab-server",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="QuLab gRPC server. Every setting comes from an environment variable:\n\n"
        + settings_table(),
    )
    parser.add_argument("--version", action="version", version=f"qulab-server {__version__}")
    parser.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        sys.exit(f"qulab-server: bad setting: {exc}")

    from qulab.server import logs
    from qulab.server.app import serve
    from qulab.server.telemetry import Tracing

    logs.configure(settings.log_level)
    try:
        tracing = Tracing.from_environment()  # the OTEL_* variables
    except ValueError as exc:
        sys.exit(f"qulab-server: bad setting: {exc}")
    try:
        if settings.event_loop == "uvloop":
            import uvloop

            uvloop.run(serve(settings, tracing))
        else:
            asyncio.run(serve(settings, tracing))
    except SettingsError as exc:  # a credentials or TLS file named by a setting
        sys.exit(f"qulab-server: bad setting: {exc}")


if __name__ == "__main__":
    main()
