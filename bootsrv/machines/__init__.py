"""Machines, the product's use cases: what bootsrv knows of each box and its life cycle (`model`),
the shared registry file (`store`), the admin use cases (`admin`), netboot once (`planner`,
`plan`, `tftpfiles`), the hypervisor pool (`pool`), machines' addresses in the lease store
(`addressbook`) and enrollment with one-time tokens (`enrollment`)."""
