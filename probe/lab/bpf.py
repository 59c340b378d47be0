"""Drop SYNs from chosen IPv4 sources with a classic BPF socket filter (no root needed).

A filter attached to a listening TCP socket runs on every packet the socket receives,
before the kernel answers a SYN; returning 0 discards the packet, so the client's connect
simply times out. Accepted sockets inherit the filter of the moment they were accepted.

The program loads the IPv4 source address relative to the network header
(``SKF_NET_OFF + 12``), compares it with each blocked address and returns 0 on a match,
0xFFFFFFFF (keep the whole packet) otherwise.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
from collections.abc import Iterable

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
SKF_NET_OFF = -0x100000
MAX_ADDRESSES = 250  # jump offsets are 8 bits

# Classic BPF opcodes (linux/filter.h).
_BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
_BPF_JMP_JEQ_K = 0x05 | 0x10 | 0x00  # BPF_JMP | BPF_JEQ | BPF_K
_BPF_RET_K = 0x06 | 0x00  # BPF_RET | BPF_K


class SockFilter(ctypes.Structure):
    _fields_ = (
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    )


class SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter)))


def drop_sources_program(addresses: Iterable[str]) -> list[tuple[int, int, int, int]]:
    """The BPF instructions (code, jt, jf, k) that drop packets from `addresses`.

    >>> len(drop_sources_program(["127.0.0.2", "127.0.0.3"]))
    5
    """
    keys = sorted({int(ipaddress.IPv4Address(a)) for a in addresses})
    if len(keys) > MAX_ADDRESSES:
        raise ValueError(f"at most {MAX_ADDRESSES} addresses per filter")
    program = [(_BPF_LD_W_ABS, 0, 0, (SKF_NET_OFF + 12) & 0xFFFFFFFF)]
    n = len(keys)
    for index, key in enumerate(keys):
        # On a match jump to the final "drop"; otherwise fall through to the next compare.
        to_drop = n - index  # remaining compares after this one, then "accept"
        program.append((_BPF_JMP_JEQ_K, to_drop, 0, key))
    program.append((_BPF_RET_K, 0, 0, 0xFFFFFFFF))
    program.append((_BPF_RET_K, 0, 0, 0))
    return program


def attach_drop_filter(sock: socket.socket, addresses: Iterable[str]) -> None:
    """Make `sock` discard packets from `addresses`; an empty set removes the filter.

    Raises OSError when the kernel refuses the filter.
    """
    addresses = list(addresses)
    if not addresses:
        detach_filter(sock)
        return
    program = drop_sources_program(addresses)
    array = (SockFilter * len(program))(*(SockFilter(*insn) for insn in program))
    fprog = SockFprog(len(program), ctypes.cast(array, ctypes.POINTER(SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


def detach_filter(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
    except OSError as exc:
        if exc.errno != 2:  # ENOENT: nothing attached
            raise
