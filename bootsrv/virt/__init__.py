"""Guests on the hypervisor pool: names, domain XML, placement, storage and the libvirt adapter.

Only `bootsrv.virt.libvirt_adapter` imports libvirt; everything else talks to the small
interfaces of `bootsrv.virt.provisioner` and has an in-memory version of each.
"""
