"""Signals that someone other than the policyholder answered: completed too fast, one device or
address used by many policyholders. Pure rules; the store counts and flags the case.
"""

from __future__ import annotations

import ipaddress

FLAGS = ("too_fast", "shared_device", "shared_address")


def too_fast(seconds: float, questions: int, min_seconds_per_question: float) -> bool:
    """Less time than `min_seconds_per_question` for each question shown."""
    return questions > 0 and seconds < questions * min_seconds_per_question


def shared(count_policyholders: int, limit: int) -> bool:
    """More distinct policyholders than `limit` on one device or address."""
    return count_policyholders > limit


def flags(*, seconds: float, questions: int, min_seconds_per_question: float, device_policyholders: int = 0,
          address_policyholders: int = 0, limit: int = 3) -> list[str]:
    out = []
    if too_fast(seconds, questions, min_seconds_per_question):
        out.append("too_fast")
    if shared(device_policyholders, limit):
        out.append("shared_device")
    if shared(address_policyholders, limit):
        out.append("shared_address")
    return out


def address_key(client_ip: str) -> str:
    """What counts as one address: an IPv4 address, or an IPv6 /64 (one subscriber's network)."""
    try:
        address = ipaddress.ip_address((client_ip or "").strip())
    except ValueError:
        return (client_ip or "").strip()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
