"""TFTP: read-only, confined to config.boot.tftp_root, with per-machine files rendered on request.

options.py (RFC 2347-2349, 7440 negotiation) and paths.py (confinement) are pure; server.py is the
socket loop; service.py plugs it into `bootsrv serve`; populate.py fills the root from Debian's
boot-loader packages.
"""
