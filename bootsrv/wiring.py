"""Builds the long-lived objects of one server from its Config, once, and hands them out.

The HTTP app, the DHCP engine, DNS and the CLI all take what they need from one `Wiring`, so the
lease store, the machine registry and the profile catalog exist once per process and every area
sees the same instances. Each property is built on first use, so a command that needs only the
lease store never loads profiles or libvirt.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from bootsrv.config import Config


class Wiring:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time, dhcp_process: int = 0):
        self.config = config
        self.clock = clock  # injected so tests can move time; everything reads time through it
        self.dhcp_process = dhcp_process  # which of config.dhcp.processes this is (0: the main one)

    @functools.cached_property
    def leases(self):
        """The shared lease store (config.store.directory), opened for this server's owner_ips."""
        from bootsrv.leases import open_store

        return open_store(self.config, self.clock, self.dhcp_process)

    @functools.cached_property
    def machines(self):
        """The machine registry, shared with the peer server through the store directory."""
        from bootsrv.machines_store import FileRegistry

        return FileRegistry(self.config.store.directory)

    @functools.cached_property
    def profiles(self):
        """The install profile catalog (profiles/ data, templates/), validated once per process."""
        from bootsrv.profiles.catalog import load

        return load(self.config.profiles.profiles_dir, self.config.profiles.templates_dir)

    @functools.cached_property
    def tftp_dynamic(self):
        """Per-machine boot configs the TFTP server renders on request (bootsrv.profiles.tftp)."""
        from bootsrv.profiles.tftp import dynamic_files

        return dynamic_files(self)

    def close(self) -> None:
        """Release what was opened: the lease store flushes pending commits and stops its flusher."""
        store = self.__dict__.get("leases")  # only if some area opened it
        if store is not None:
            store.close()
