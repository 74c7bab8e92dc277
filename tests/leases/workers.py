"""Writer processes for the stress and crash tests (and bench/bench_leases.py).

`python -m tests.leases.workers allocate DIR WORKER COUNT`: offer + ACK COUNT distinct clients,
printing "ip client_id" after each ACK returned (so after the lease is durable). Environment:
COMPACT_EVERY=n compacts every n leases; LEASES_NFS_MODE=1 forces the NFS precautions; THREADS=n
shares the clients among n threads.
"""

from __future__ import annotations

import os
import sys
import threading
from ipaddress import IPv4Address, IPv4Network

from bootsrv.leases import Pool, Range, client_id_of_mac
from bootsrv.leases.files import FileStore

A = IPv4Address("10.8.0.1")
BIG = {
    "big": Pool(
        "big",
        IPv4Network("10.8.0.0/16"),
        (Range(IPv4Address("10.8.0.10"), IPv4Address("10.8.255.250"), A),),
        frozenset({A}),
    )
}
NOW = 1_700_000_000


def client(worker: int, i: int) -> str:
    return client_id_of_mac(bytes([0x52, 0x54, worker >> 8 & 0xFF, worker & 0xFF, i >> 8 & 0xFF, i & 0xFF]))


def allocate(
    directory: str,
    worker: int,
    count: int,
    out_fd: int,
    owner: IPv4Address = A,
    compact_every: int = 0,
    nfs: bool | None = None,
    threads: int = 1,
) -> None:
    store = FileStore(directory, BIG, (owner,), nfs=nfs)

    def run(first: int, last: int) -> None:
        for i in range(first, last):
            if compact_every and i % compact_every == compact_every - 1:
                store.compact("big")
            cid = client(worker, i)
            offer = store.offer("big", cid, NOW, 30)
            lease = store.ack("big", offer.ip, cid, NOW, 3600)
            os.write(out_fd, f"{lease.ip} {cid}\n".encode())  # only once ack returned: durable

    try:
        if threads == 1:
            run(0, count)
        else:
            share = count // threads
            pool = [threading.Thread(target=run, args=(t * share, (t + 1) * share)) for t in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
    finally:
        store.close()


if __name__ == "__main__":
    if sys.argv[1] == "allocate":
        allocate(
            sys.argv[2],
            int(sys.argv[3]),
            int(sys.argv[4]),
            sys.stdout.fileno(),
            compact_every=int(os.environ.get("COMPACT_EVERY", "0")),
            nfs=True if os.environ.get("LEASES_NFS_MODE") == "1" else None,
            threads=int(os.environ.get("THREADS", "1")),
        )
