"""Builds the long-lived objects of one server from its Config, once, and hands them out.

The HTTP app, the DHCP engine, DNS and the CLI all take what they need from one `Wiring`, so the
lease store, the machine registry and the profile catalog exist once per process and every area
sees the same instances. Each property is built on first use, so a command that needs only the
lease store never loads profiles or libvirt.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection
from pathlib import Path

from bootsrv.config import Config
from bootsrv.errors import ConfigError


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
        from bootsrv.machines.store import FileRegistry

        return FileRegistry(self.config.store.directory)

    @functools.cached_property
    def sightings(self):
        """Netboot clients DHCP did not know, waiting for the discovery recorder (one per process)."""
        from bootsrv.machines.discovery import SightingQueue

        return SightingQueue()

    @functools.cached_property
    def discovery_rate(self):
        """How many new machines this process may record now (boot.discovery_rate and _burst,
        shared out among the DHCP processes): its recorder and its HTTP boot decision draw on it."""
        from bootsrv.machines.discovery import TokenBucket

        boot, processes = self.config.boot, self.config.dhcp.processes
        return TokenBucket(boot.discovery_rate / processes, max(1, boot.discovery_burst // processes))

    @functools.cached_property
    def profiles(self):
        """The install profile catalog (profiles/ data, templates/), validated once per process."""
        from bootsrv.profiles.catalog import load

        return load(self.config.profiles.profiles_dir, self.config.profiles.templates_dir)

    @functools.cached_property
    def address_book(self):
        """Machines' addresses as MANUAL+PERMANENT records of the lease store."""
        from bootsrv.machines.addressbook import LeaseAddressBook

        return LeaseAddressBook(self.leases, self.config, self.clock)

    @functools.cached_property
    def machine_addresses(self):
        """The addresses the lease store gives each MAC (bindings, live leases): the install boot,
        its answer and the enrollment callback are bound to them (bootsrv.machines.binding)."""
        from bootsrv.machines.binding import LeaseAddresses

        return LeaseAddresses(self.leases)

    def known_profiles(self) -> Collection[str] | None:
        """The profile catalog's names, which `machine add` checks against (loading it validates
        every profile: a broken one is an error here too, not a silent "unknown profile"); None
        when the configured profiles directory does not exist (no catalog, so no check)."""
        if not self.config.profiles.profiles_dir.is_dir():
            return None
        return self.profiles.names()

    @functools.cached_property
    def plans(self):
        """The install plan builder (its renderer holds Jinja's template cache)."""
        from bootsrv.machines.plan import PlanBuilder
        from bootsrv.profiles.render import Renderer

        return PlanBuilder(self.profiles, Renderer(self.profiles.templates_dir), self.config)

    @functools.cached_property
    def planner(self):
        """Netboot once over the machine registry: issues the token, moves the machine to installing."""
        from bootsrv.machines.planner import RegistryPlanner

        return RegistryPlanner(self.machines, self.clock, self.config.api.enroll_token_ttl, self.plans.from_install)

    @functools.cached_property
    def tftp_dynamic(self):
        """Per-machine boot configs the TFTP server renders on request (bootsrv.machines.tftpfiles)."""
        from bootsrv.machines.tftpfiles import dynamic_files

        return dynamic_files(self)

    @functools.cached_property
    def guests(self):
        """The guest use cases over the pool: the config's static hypervisors first, then the
        enrolled machines that report a libvirt URI; storage connected on first use."""
        from bootsrv.machines.pool import MachineHypervisors
        from bootsrv.virt.guests import Guests
        from bootsrv.virt.hosts import Chain, MemoryHypervisors
        from bootsrv.virt.leasebind import LeaseBindings
        from bootsrv.virt.libvirt_adapter import Connections
        from bootsrv.virt.settings import from_config

        settings = from_config(self.config)
        connections = Connections()
        sources = [MemoryHypervisors(settings.hypervisors)]
        if Path(self.config.store.directory).is_dir():
            sources.append(MachineHypervisors(self.machines))
        source = Chain(*sources)
        storage_uri = settings.storage_uri or next((h.uri for h in source.hypervisors()), None)
        templates = Path(self.config.profiles.templates_dir)
        guests = Guests(
            settings,
            _LazyStorage(storage_uri, connections),
            source,
            connections,
            LeaseBindings(lambda: self.leases, self.clock),
            templates if (templates / "domains").is_dir() else None,
        )
        guests.connections = connections
        return guests

    def close(self) -> None:
        """Release what was opened: the lease store flushes pending commits and stops its
        flusher; libvirt connections are closed."""
        store = self.__dict__.get("leases")  # only if some area opened it
        if store is not None:
            store.close()
        guests = self.__dict__.get("guests")
        if guests is not None:
            guests.connections.close()


class _LazyStorage:
    """Opens the storage connection on first use: `guest list` or `start` never need it."""

    def __init__(self, uri: str | None, connect):
        self._uri, self._connect, self._host = uri, connect, None

    def __getattr__(self, name):
        if self._host is None:
            if not self._uri:
                raise ConfigError(
                    "<config>",
                    "guests.storage_uri",
                    "no libvirt connection for the shared storage: set it or list a hypervisor",
                )
            self._host = self._connect(self._uri)
        return getattr(self._host, name)
