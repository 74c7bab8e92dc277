"""TFTP: read-only, confined to config.boot.tftp_root, with per-machine files rendered on request.

Pure cores: options.py (RFC 2347-2349, 7440 negotiation), paths.py (confinement; open_inside is
its I/O edge) and packet.py (the wire format). transfer.py is one RRQ's state machine, loop.py
the epoll loop that runs transfers, server.py the request socket and the decision on each
request, pump.py the processes that run disk transfers. bootsrv.app.tftp plugs the server into
`bootsrv serve`; populate.py fills the root from Debian's boot-loader packages.

Imports point one way: server -> pump, loop, transfer, packet; pump -> loop, transfer, options;
loop -> transfer; transfer -> packet, options; packet -> paths.
"""
