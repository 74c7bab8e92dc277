"""Pump processes: the data path of disk transfers, in separate processes.

This module owns both ends of the hand-off: `Pump`, the server's handle on one process, and
`main`, the process itself (`python -m bootsrv.tftp.pump FD LEVEL FORMAT`).

The server decides everything (confinement, dynamic files, options) and opens the file and the
transfer socket; a pump only moves blocks. It receives both descriptors over a Unix socket
(SCM_RIGHTS) with the negotiated options, runs them in a TransferLoop like the server's, logs
each transfer's one line itself and tells the server the client is done ("ip:port"), so the
client's claim is released at once. Why: CPython runs one thread at a time, and on a busy host
one process serving 50 clients gets one task's share of the CPU against those clients' own
processes (figures in docs/tftp.md). Pumps are fresh interpreters (not forks of a threaded
`bootsrv serve`); dynamic files stay in the server, which holds the profiles.
"""

from __future__ import annotations

import array
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from bootsrv import log as logsetup
from bootsrv.log import event
from bootsrv.tftp.loop import TransferLoop
from bootsrv.tftp.options import Negotiated
from bootsrv.tftp.transfer import Transfer

MAX_MESSAGE = 16384
log = logging.getLogger("bootsrv.tftp")


class Pump:
    """The server's handle on one pump process."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root_logger = logging.getLogger("bootsrv")
        level = logging.getLevelName(root_logger.getEffectiveLevel()).lower()
        handler = root_logger.handlers[0] if root_logger.handlers else None
        fmt = "json" if handler is not None and type(handler.formatter).__name__ == "JsonFormatter" else "kv"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bootsrv.tftp.pump", str(theirs.fileno()), level, fmt], pass_fds=[theirs.fileno()]
        )
        theirs.close()
        self.sock = ours
        self.sock.setblocking(False)
        self.dead = False

    def send(self, tr: Transfer) -> bool:
        if tr.fd is None:
            return False  # a dynamic file's bytes live in this process only: the caller serves it
        opts = tr.opts
        header = json.dumps(
            {
                "client": list(tr.client),
                "file": tr.filename,
                "size": tr.size,
                "blksize": opts.blksize,
                "timeout": opts.timeout,
                "windowsize": opts.windowsize,
                "oack": opts.oack,
                "ignored": opts.ignored,
            }
        ).encode()
        fds = array.array("i", [tr.sock.fileno(), tr.fd])
        try:
            self.sock.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        except OSError as exc:  # dead or backed up: the caller serves the transfer itself
            if not isinstance(exc, BlockingIOError) and not self.dead:
                self.dead = True
                event(log, "tftp.pump_gone", logging.WARNING, pid=self.proc.pid, error=repr(exc))
            return False
        return True

    def close(self) -> None:
        self.sock.close()  # the pump sees EOF, finishes its transfers' log lines and exits
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main(argv: list[str]) -> int:
    ctrl_fd, level, fmt = int(argv[0]), argv[1], argv[2]
    logsetup.setup(level, fmt)
    # Ctrl-C reaches the whole process group; the server stops us by closing our socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctrl = socket.socket(fileno=ctrl_fd)
    ctrl.setblocking(False)
    stop = threading.Event()

    def on_hand_off(worker: TransferLoop, now: float) -> None:
        for _ in range(16):
            try:
                msg, ancdata, _flags, _addr = ctrl.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(2 * 4))
            except (BlockingIOError, InterruptedError):
                return
            if not msg:
                stop.set()  # the server closed our socket
                return
            fds = array.array("i")
            for level_, type_, data in ancdata:
                if level_ == socket.SOL_SOCKET and type_ == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % 4])
            if len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                continue
            h = json.loads(msg)
            opts = Negotiated(h["blksize"], h["timeout"], h["windowsize"], h["oack"], h["ignored"])
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            tr = Transfer(sock, tuple(h["client"]), h["file"], fds[1], None, h["size"], opts, time.monotonic())
            worker.add(tr, time.monotonic())

    def finished(tr: Transfer) -> None:
        try:  # the server releases the client's claim; if this is lost, the claim just expires
            ctrl.send(f"{tr.client[0]}:{tr.client[1]}".encode())
        except OSError:
            pass

    worker = TransferLoop(stop, None, on_finish=finished)
    worker.add_source(ctrl.fileno(), on_hand_off)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
