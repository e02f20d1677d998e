"""``carechain token``: mint a bearer token from the local issuer (demo, tests)."""

from __future__ import annotations

import argparse

from api.auth import DEFAULT_TTL_S, local_issuer
from carechain.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", required=True, help="user id (the token's sub)")
    parser.add_argument("--org", required=True, help="organisation id")
    parser.add_argument("--role", required=True, help="nurse, clinician, coordinator, admin or auditor")
    parser.add_argument("--unit", default=None, help="the acting unit within the organisation")
    parser.add_argument("--ttl", type=int, default=DEFAULT_TTL_S, help="lifetime in seconds")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print one token on stdout."""
    if settings.jwks_url:
        print("jwks_url is set: tokens come from the configured identity provider, not the local issuer")
        return 2
    token = local_issuer(settings).mint(args.user, args.org, args.role, unit=args.unit, ttl_s=args.ttl)
    print(token)
    return 0
