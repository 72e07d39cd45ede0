"""`qulab health`: the server's grpc.health.v1 status."""

from __future__ import annotations

import argparse
import json

from grpc_health.v1 import health_pb2

from qulab.cli._common import ExitCode, connect, status_name, timeout_of

__all__ = ["register"]


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    parser = commands.add_parser(
        "health",
        parents=[common],
        help="the server's health: SERVING (exit 0) or not (exit 3)",
        description="Ask the server's grpc.health.v1 service for the status of the whole "
        "server or of one service (e.g. qulab.v1.MoleculeService).",
    )
    parser.add_argument("service", nargs="?", default="", help="default: the whole server")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> ExitCode:
    with connect(args) as client:
        status = client.health(args.service, timeout=timeout_of(args))
    name = status_name(status)
    if getattr(args, "json", False):
        print(json.dumps({"service": args.service, "status": name}))
    else:
        print(name)
    serving = status == health_pb2.HealthCheckResponse.SERVING
    return ExitCode.OK if serving else ExitCode.UNAVAILABLE
