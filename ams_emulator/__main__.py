"""``python -m ams_emulator`` / ``ams-emulator``: run the AMS v2 emulator on its own.

It prints the endpoints, the tenant, the client id and secret and the CA file, plus an exporter
configuration that points at them, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from types import FrameType
from urllib.parse import urlsplit

from ams_emulator.config_text import exporter_config
from ams_emulator.emulator import Emulator, is_loopback
from ams_emulator.faults import KINDS, Fault

SECRET_VARIABLE = "AMS_EMULATOR_CLIENT_SECRET"


def _aware(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date and time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}Z")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _ratio(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a ratio must be within 0..1, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a number within 0..65535, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ams-emulator",
        allow_abbrev=False,  # flags are matched exactly, as the exporter's
        description="Run the Azure Media Services v2 + Azure AD emulator over HTTPS on loopback.",
    )
    account = parser.add_argument_group("account and scenario")
    account.add_argument("--jobs", type=int, default=200, help="jobs in the account (default 200)")
    account.add_argument("--seed", type=int, default=1, help="scenario seed (default 1)")
    account.add_argument(
        "--speed",
        type=_non_negative,
        default=1.0,
        help="clock speed: simulated seconds per real second; 0 freezes it (default 1)",
    )
    account.add_argument(
        "--start", type=_aware, help="the clock's start, ISO 8601 with zone (default: now)"
    )
    account.add_argument(
        "--history-days", type=float, default=90.0, help="age of the oldest job (default 90)"
    )
    account.add_argument(
        "--slots", type=int, default=10, help="jobs processed at the same time (default 10)"
    )
    account.add_argument(
        "--arrivals-per-hour",
        type=_non_negative,
        help="new jobs per hour of simulated time (default: the history's rate)",
    )
    account.add_argument(
        "--verbose-date-format",
        choices=("iso", "msdate"),
        default="iso",
        help="dates in odata=verbose answers: ISO with Z, or /Date(ms)/ (default iso)",
    )
    network = parser.add_argument_group("network and tokens")
    network.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    network.add_argument(
        "--port", type=_port, default=0, help="port; 0 picks a free one (default 0)"
    )
    network.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow --host to be an address other machines can reach",
    )
    network.add_argument(
        "--token-lifetime",
        type=_non_negative,
        default=3600.0,
        help="access token lifetime in seconds (default 3600)",
    )
    network.add_argument(
        "--resource",
        default="https://rest.media.azure.net",
        help="the AMS resource tokens are issued for (default https://rest.media.azure.net)",
    )
    faults = parser.add_argument_group("faults (for demos)")
    faults.add_argument(
        "--latency", type=_non_negative, default=0.0, help="seconds added to every AMS answer"
    )
    faults.add_argument(
        "--fail-ratio",
        type=_ratio,
        default=0.0,
        help="fraction of AMS requests answered with --fail-status",
    )
    faults.add_argument(
        "--fail-status", type=int, default=503, help="status for --fail-ratio (default 503)"
    )
    faults.add_argument(
        "--reset-ratio", type=_ratio, default=0.0, help="fraction of AMS connections reset"
    )
    faults.add_argument("--aad-down", action="store_true", help="Azure AD resets every connection")
    faults.add_argument(
        "--reject-datetime-filter",
        action="store_true",
        help="answer 400 to any $filter with a datetime'...' literal",
    )
    faults.add_argument(
        "--fault",
        dest="fault_specs",
        metavar="KIND[,KEY=VALUE...]",
        type=parse_fault,
        action="append",
        default=[],
        help=(
            "any fault of the Python API, repeatable; KIND is one of "
            f"{', '.join(KINDS)}; keys: {', '.join(FAULT_KEYS)}; e.g. "
            "--fault status,status=429,retry_after=2,count=5 or --fault malformed_json,ratio=0.1"
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    return parser


# The Fault fields a --fault spec may set, with how to read each value.
FAULT_KEYS: dict[str, type] = {
    "api": str,
    "path": str,
    "count": int,
    "ratio": float,
    "status": int,
    "message": str,
    "retry_after": int,
    "latency": float,
    "size": int,
    "drip_bytes": int,
    "drip_interval": float,
}


def parse_fault(spec: str) -> Fault:
    """``KIND[,KEY=VALUE...]`` → :class:`Fault` (an ``argparse`` type: errors are user messages)."""
    kind, *pairs = spec.split(",")
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in FAULT_KEYS:
            raise argparse.ArgumentTypeError(
                f"{pair!r}: expected KEY=VALUE with KEY one of {', '.join(FAULT_KEYS)}"
            )
        try:
            options[key] = FAULT_KEYS[key](value)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{key}={value!r}: expected {FAULT_KEYS[key].__name__}"
            ) from None
    try:
        return Fault(kind.strip(), **options)  # type: ignore[arg-type]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _faults(args: argparse.Namespace) -> list[Fault]:
    faults = []
    if args.latency:
        faults.append(Fault("latency", latency=args.latency))
    if args.fail_ratio:
        faults.append(Fault("status", status=args.fail_status, ratio=args.fail_ratio))
    if args.reset_ratio:
        faults.append(Fault("reset", ratio=args.reset_ratio))
    if args.aad_down:
        faults.append(Fault("aad_down"))
    if args.reject_datetime_filter:
        faults.append(Fault("reject_datetime_filter"))
    specs: list[Fault] = args.fault_specs
    return faults + specs


def describe(emulator: Emulator) -> str:
    """What a user needs to connect, including an exporter configuration."""
    return f"""AMS v2 emulator running.
  account endpoint:   {emulator.account_endpoint}
  legacy endpoint:    {emulator.legacy_endpoint}  (301 to the account endpoint; an exporter
                      using it needs redirect_hosts: ["{urlsplit(emulator.account_endpoint).hostname}"])
  authority host:     {emulator.authority_host}
  tenant:             {emulator.tenant}
  client id:          {emulator.client_id}
  client secret:      {emulator.client_secret}
  resource:           {emulator.resource}
  CA file:            {emulator.ca_file}
  client certificate: {emulator.client_certificate_file}
  managed identity:   IDENTITY_ENDPOINT={emulator.managed_identity_endpoint} IDENTITY_HEADER={emulator.managed_identity_header}

Exporter configuration (export {SECRET_VARIABLE}={emulator.client_secret}):
{exporter_config(emulator.account_entry("emulator", secret_variable=SECRET_VARIABLE))}
Press Ctrl-C to stop."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.allow_non_loopback and not is_loopback(args.host):
        parser.error(f"--host {args.host} is not a loopback address; add --allow-non-loopback")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    scenario = {"history_days": args.history_days, "slots": args.slots}
    if args.arrivals_per_hour is not None:
        scenario["arrivals_per_hour"] = args.arrivals_per_hour
    try:
        faults = _faults(args)
        emulator = Emulator(
            jobs=args.jobs,
            seed=args.seed,
            speed=args.speed,
            start=args.start,
            token_lifetime=args.token_lifetime,
            host=args.host,
            port=args.port,
            verbose_date_format=args.verbose_date_format,
            resource=args.resource,
            allow_non_loopback=args.allow_non_loopback,
            **scenario,
        )
        for fault in faults:
            emulator.faults.add(fault)
    except (ValueError, OSError) as exc:
        print(f"ams-emulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with emulator:
        print(describe(emulator), flush=True)
        while not stop.wait(1.0):
            pass
    print("ams-emulator: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
