"""``carechain api``: serve the care-chain API (and the web page) with uvicorn."""

from __future__ import annotations

import argparse

from carechain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="defaults to CARECHAIN_API_HOST")
    parser.add_argument("--port", type=int, default=None, help="defaults to CARECHAIN_API_PORT")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Build the app once from these settings and serve it until interrupted."""
    import uvicorn

    from api.app import create_app

    host = args.host or settings.api_host
    port = args.port or settings.api_port
    if args.workers > 1:
        # Each worker builds its own app (own pool, own LISTEN connection) from the environment.
        uvicorn.run(
            "api.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_level=args.log_level,
            proxy_headers=False,
        )
        return 0
    uvicorn.run(create_app(settings), host=host, port=port, log_level=args.log_level, proxy_headers=False)
    return 0
