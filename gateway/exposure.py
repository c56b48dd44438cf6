"""What the gateway exposes, said once at start-up (DECISIONS 23): the addresses each listener
actually bound ("off" for one that is off), and one warning when any of them is reachable from
beyond this machine, since nothing yet (no TLS, no authentication) stands in a caller's way."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)

OFF = "off"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.1``, ``[::1]``,
    ``localhost``); wildcards (``[::]``, ``0.0.0.0``, ``""``) and names are not."""
    bare = host.strip("[]")
    if bare == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def address(host: str, port: int | None) -> str:
    """``host:port`` as a caller would write it (IPv6 in brackets), or "off"."""
    if port is None:
        return OFF
    bare = host.strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare or '0.0.0.0'}:{port}"


def announce(listeners: Mapping[str, tuple[str, int | None]]) -> dict[str, str]:
    """Log what each listener (name → host and bound port, None: off) serves on, and warn
    once if any of it is not loopback. Returns name → address."""
    shown = {name: address(host, port) for name, (host, port) in listeners.items()}
    log.info("listening: %s", ", ".join(f"{name} {at}" for name, at in shown.items()))
    exposed = [
        shown[name] for name, (host, port) in listeners.items()
        if port is not None and not is_loopback(host)
    ]  # fmt: skip
    if exposed:
        log.warning(
            "serving on %s without TLS or authentication: anyone who can reach it can call it",
            ", ".join(exposed),
        )
    return shown
