"""Which addresses a link may reach: public ones only (server-side request forgery)."""

from __future__ import annotations

import ipaddress

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Not public, though Python's is_global may say so: IETF protocol assignments (192.0.0.9 and .10
# among them) and IPv6 site-local (deprecated, still routed inside some sites).
_RESERVED = [ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("fec0::/10")]
_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")  # the one address allow_loopback lets through


def forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_loopback: bool) -> str:
    """Why the bot must not connect to `ip` ("" when it may)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return forbidden(embedded, False)  # allow_loopback means 127.0.0.1 itself, not ::ffff:…
    if ip.is_loopback:
        return "" if allow_loopback and ip == _LOOPBACK else "a loopback address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global or any(ip in net for net in _RESERVED):
        return "a reserved address"
    return ""
