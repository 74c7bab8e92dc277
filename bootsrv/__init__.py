"""bootsrv: network-boot and hypervisor-bootstrap server."""

__version__ = "0.1.0"
