"""Run a Python script under the seccomp filter systemd installs for MemoryDenyWriteExecute=yes.

Usage: ``python tests/deploy/mdwe.py SCRIPT``. The rules are systemd's (seccomp-util.c): EPERM for
mmap asking for write+execute, for mprotect/pkey_mprotect asking for execute, for shmat with
SHM_EXEC. Exits 77 when libseccomp is not available, so the caller can skip.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import runpy
import sys

ALLOW = 0x7FFF0000
DENY = 0x00050000 | errno.EPERM  # SCMP_ACT_ERRNO(EPERM)
MASKED_EQ = 7  # SCMP_CMP_MASKED_EQ
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def install_filter() -> None:
    name = ctypes.util.find_library("seccomp")
    if name is None:
        sys.exit(77)
    lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(ALLOW)
    for syscall, arg, mask in (
        ("mmap", 2, PROT_WRITE | PROT_EXEC),
        ("mprotect", 2, PROT_EXEC),
        ("pkey_mprotect", 2, PROT_EXEC),
        ("shmat", 2, SHM_EXEC),
    ):
        number = lib.seccomp_syscall_resolve_name(syscall.encode())
        cmp = (_ArgCmp * 1)(_ArgCmp(arg, MASKED_EQ, mask, mask))
        if lib.seccomp_rule_add_array(ctx, DENY, number, 1, cmp) != 0:
            raise OSError(f"seccomp_rule_add({syscall}) failed")
    if lib.seccomp_load(ctx) != 0:
        raise OSError("seccomp_load failed")


def assert_filter_bites() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    anonymous_private = 0x22
    address = libc.mmap(None, 4096, PROT_WRITE | PROT_EXEC | 0x1, anonymous_private, -1, 0)
    if address != ctypes.c_void_p(-1).value or ctypes.get_errno() != errno.EPERM:
        raise SystemExit("the MemoryDenyWriteExecute filter is not in force")


if __name__ == "__main__":
    install_filter()
    assert_filter_bites()
    runpy.run_path(sys.argv[1], run_name="__main__")
