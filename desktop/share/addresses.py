"""This computer's addresses that a share may be bound to: every interface address except
loopback (127.0.0.0/8, ::1), link-local (169.254/16, fe80::/10), unspecified and multicast.
Read with `ifaddr` (pure Python, every desktop OS)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkAddress:
    """One address a share can listen on: `ip` ("192.168.1.20", "fd00::2"), the interface's
    name as the OS shows it ("Wi-Fi", "eth0")."""
    ip: str
    interface: str

    @property
    def url_host(self) -> str:
        """The host part of a URL: IPv6 in brackets."""
        return f"[{self.ip}]" if ":" in self.ip else self.ip

    @property
    def label(self) -> str:
        return f"{self.ip} ({self.interface})"


def shareable(ip: str) -> bool:
    """Whether `ip` is an address others on a network can reach this computer on."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local or addr.is_unspecified or addr.is_multicast)


def network_addresses() -> list[NetworkAddress]:
    """The shareable addresses of this computer, IPv4 first, in interface order; [] when it has
    none (offline, or only loopback)."""
    import ifaddr

    found: list[NetworkAddress] = []
    for adapter in ifaddr.get_adapters():
        name = adapter.nice_name or adapter.name
        for entry in adapter.ips:
            ip = entry.ip if isinstance(entry.ip, str) else entry.ip[0]  # IPv6: (ip, flow, scope)
            if shareable(ip) and all(a.ip != ip for a in found):
                found.append(NetworkAddress(ip, name))
    return sorted(found, key=lambda a: ":" in a.ip)
