"""Authoritative DNS for the lease store's host names: pure zone data and answers (zone.py,
answer.py), the UDP/TCP edge (server.py) and the service for `bootsrv serve` (service.py)."""
