"""Debian's ``prometheus-libvirt-exporter`` (0.2.0, Kumina's), run for real beside
``xvirt exporter`` by the family comparison test and the scrape-time benchmark.

It listens on a free loopback port and reads the libvirt URI it is given (a private
libvirtd's socket, ``LibvirtdProcess.uri``); it runs as our child, in a temporary
directory of its own, stopped by PID (the rules of ``_child.ChildProcess``). Needs
``/usr/bin/prometheus-libvirt-exporter`` (Debian's package of that name) and httpx.
"""

from __future__ import annotations

import os

import httpx

from xvirt.testing._child import ChildProcess
from xvirt.testing.daemon import free_port

__all__ = ["DEBIAN_EXPORTER", "DebianExporterError", "DebianExporterProcess"]

DEBIAN_EXPORTER = "/usr/bin/prometheus-libvirt-exporter"


class DebianExporterError(RuntimeError):
    """Debian's exporter could not be started or did not answer in time."""


class DebianExporterProcess(ChildProcess):
    """One Debian libvirt exporter reading ``libvirt_uri``; ``url`` is its /metrics."""

    name = "prometheus-libvirt-exporter"
    error = DebianExporterError
    start_timeout_s = 20.0
    stop_timeout_s = 10.0

    def __init__(self, libvirt_uri: str, *, binary: str = DEBIAN_EXPORTER) -> None:
        super().__init__(prefix="xvirt-libvirt-exporter-", log_name="exporter.log")
        self.libvirt_uri = libvirt_uri
        self.port = free_port()
        self._binary = binary
        self._cwd = self.state_dir

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def _command(self) -> list[str]:
        if not os.access(self._binary, os.X_OK):
            raise DebianExporterError(f"{self._binary} not found: install "
                                      "prometheus-libvirt-exporter")
        return [self._binary, f"--web.listen-address=127.0.0.1:{self.port}",
                f"--libvirt.uri={self.libvirt_uri}"]

    def _ready(self, deadline: float) -> bool:
        """Its landing page answers (a scrape would read libvirt)."""
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=2.0).status_code == 200
        except httpx.TransportError:
            return False
