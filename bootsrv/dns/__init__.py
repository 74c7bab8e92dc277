"""Authoritative DNS for the lease store's host names: pure zone data and answers (zone.py,
answer.py) and the UDP/TCP edge (server.py); bootsrv.app.dns runs it in `bootsrv serve`."""
