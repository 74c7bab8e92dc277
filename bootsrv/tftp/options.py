"""TFTP option negotiation (RFC 2347) as a pure function: what the client asked -> what we use.

The OACK carries only options the client asked for, spelled as the client spelled them (RFC 2347
names are case-insensitive, but strict UEFI clients compare what they get against what they
sent): stock tftpy puts blksize into every OACK, and some UEFI firmware then aborts the transfer.

An option we do not know, or whose value we do not accept, is left out of the OACK (RFC 2347:
"the server should simply omit the option"): the transfer proceeds with the default, which every
client must handle. We never answer ERROR 8 ourselves; that stays the client's way of saying
"your OACK does not suit me" (the UEFI tsize probe).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BLKSIZE = 512  # RFC 1350
MIN_BLKSIZE, MAX_BLKSIZE = 8, 65464  # RFC 2348: "between 8 and 65464 octets, inclusive"
MIN_TIMEOUT, MAX_TIMEOUT = 1, 255  # RFC 2349 section 2
MAX_WINDOWSIZE = 65535  # RFC 7440: 1..65535
DEFAULT_TIMEOUT = 1.0  # seconds between retransmissions when the client does not say (as tftpd-hpa)

# Our own caps (RFC 2348 and RFC 7440 both let the server answer a smaller value): a window of
# 64 already fills a 1 GbE path at blksize 1468, and a window must fit in memory we hold per
# transfer (window * blksize bytes), so many clients asking for huge windows cannot exhaust us.
WINDOW_CAP = 64
WINDOW_BYTES_CAP = 1 << 20


@dataclass(frozen=True)
class Negotiated:
    blksize: int = DEFAULT_BLKSIZE
    timeout: float = DEFAULT_TIMEOUT
    windowsize: int = 1
    # What goes into the OACK, in the client's order and spelling; empty: no OACK, DATA 1 at once.
    oack: dict[str, str] = field(default_factory=dict)
    # Options left out of the OACK and why (logged with the transfer, never sent).
    ignored: dict[str, str] = field(default_factory=dict)


def _integer(value: str) -> int | None:
    # RFC 2347: values are ASCII decimal strings; " 1468", "+1468", "1_468" and "0x5bc" are not.
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 10 else None


def negotiate(asked: dict[str, str], size: int | None) -> Negotiated:
    """Decide the options of a read transfer.

    `asked` is the RRQ's options as decoded (name -> value); `size` is the number of octets the
    transfer will carry (None if unknown, then tsize is not offered).
    """
    blksize, timeout, windowsize = DEFAULT_BLKSIZE, DEFAULT_TIMEOUT, 1
    oack: dict[str, str] = {}
    ignored: dict[str, str] = {}
    seen: set[str] = set()
    for name, value in asked.items():
        key = name.lower()
        if key in seen:
            ignored[name] = "asked twice"
            continue
        seen.add(key)
        number = _integer(value)
        if key == "blksize":
            # RFC 2348. Out of range is ignored, not clamped: the client asked for something the
            # RFC forbids, and the 512 default is the one answer every client understands.
            if number is None or not MIN_BLKSIZE <= number <= MAX_BLKSIZE:
                ignored[name] = f"not an integer in {MIN_BLKSIZE}..{MAX_BLKSIZE}"
                continue
            blksize = number
            oack[name] = str(number)
        elif key == "tsize":
            # RFC 2349: a read request carries tsize 0 and the OACK answers the size; only when asked.
            if number is None:
                ignored[name] = "not an integer"
            elif size is None:
                ignored[name] = "size not known in advance"
            else:
                oack[name] = str(size)
        elif key == "timeout":
            # RFC 2349: 1..255 seconds; the server accepts the value as is or omits it.
            if number is None or not MIN_TIMEOUT <= number <= MAX_TIMEOUT:
                ignored[name] = f"not an integer in {MIN_TIMEOUT}..{MAX_TIMEOUT}"
                continue
            timeout = float(number)
            oack[name] = str(number)
        elif key == "windowsize":
            # RFC 7440: 1..65535; the server may answer a smaller value, and the client must use it.
            if number is None or not 1 <= number <= MAX_WINDOWSIZE:
                ignored[name] = f"not an integer in 1..{MAX_WINDOWSIZE}"
                continue
            windowsize = number
            oack[name] = ""  # decided below, once blksize is known (options come in any order)
        else:
            ignored[name] = "unknown option"
    for name in oack:
        if name.lower() == "windowsize":
            windowsize = max(1, min(windowsize, WINDOW_CAP, WINDOW_BYTES_CAP // blksize))
            oack[name] = str(windowsize)
    return Negotiated(blksize, timeout, windowsize, oack, ignored)
