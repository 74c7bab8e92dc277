"""Wiring and runtime: builds one server's long-lived objects from its Config (`wiring`), turns
them into services (DHCP, TFTP, HTTP, DNS, housekeeping), and runs them (`runtime`), in one
process or, for DHCP, several (`dhcp_processes`). The only package that composes the others."""
