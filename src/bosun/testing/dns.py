"""A fake upstream DNS server for tests of the embedded DNS: UDP on a loopback address, so
forwarding is tested without traffic leaving the machine."""

from __future__ import annotations

import socket
import threading

import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class FakeUpstream:
    """Answers A queries for names ending in `suffix` with `address` (other types of those
    names: an empty answer), every other name with NXDOMAIN; records the names it is asked
    (without the final dot). `ip` "127.0.0.*" with port 53 picks a free loopback address."""

    def __init__(self, ip: str = "127.0.0.1", port: int = 0, address: str = "192.0.2.1",
                 suffix: str = "") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        candidates = [ip] if "*" not in ip else [ip.replace("*", str(n)) for n in range(100, 250)]
        for candidate in candidates:
            try:
                self.sock.bind((candidate, port))
                break
            except OSError:
                if candidate == candidates[-1]:
                    self.sock.close()
                    raise
        self.addr = self.sock.getsockname()
        self.ip = self.addr[0]
        self.address, self.suffix = address, suffix.lower()
        self.asked: list[str] = []
        threading.Thread(target=self._run, name="fake-upstream", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                q = dns.message.from_wire(wire)
                name = q.question[0].name
            except (dns.exception.DNSException, IndexError):
                continue  # not a query (the tests' own probes): nothing to answer
            text = name.to_text().rstrip(".").lower()
            self.asked.append(text)
            r = dns.message.make_response(q)
            if not text.endswith(self.suffix):
                r.set_rcode(dns.rcode.NXDOMAIN)
            elif q.question[0].rdtype == dns.rdatatype.A:
                r.answer.append(dns.rrset.from_text(name, 30, "IN", "A", self.address))
            self.sock.sendto(r.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()
