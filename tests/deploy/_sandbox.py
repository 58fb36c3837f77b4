"""Runs a command under two of systemd's kernel rules, for the unit's tests.

`python _sandbox.py [--mdwe] [--syscalls FILTER]... -- COMMAND...` sets, in
this process, then execs COMMAND under them (both survive exec):

- `--mdwe`: prctl PR_SET_MDWE, the rule of MemoryDenyWriteExecute=yes (no
  memory both writable and executable; Linux 6.3+).
- `--syscalls FILTER`: a seccomp filter like SystemCallFilter=FILTER, with
  groups expanded by `systemd-analyze syscall-filter`. Filters apply in
  order: the first without "~" sets the allow list, "~" ones take away from
  it. Other system calls fail with EPERM, as SystemCallErrorNumber=EPERM.

Exits 3 when this machine cannot apply a rule, so tests can skip.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys

# prctl(2) option and flag for memory-deny-write-execute.
_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1

# seccomp actions (linux/seccomp.h): allow, or fail with an errno.
_SCMP_ACT_ALLOW = 0x7FFF0000
_SCMP_ACT_ERRNO = 0x00050000

# Exit status meaning "this machine cannot apply the rule".
UNSUPPORTED = 3


def _unsupported(reason: str) -> None:
    print(f"sandbox: {reason}", file=sys.stderr)
    sys.exit(UNSUPPORTED)


def _groups() -> dict[str, list[str]]:
    """Every group `systemd-analyze syscall-filter` knows, with its members."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] = []
    for line in listing.splitlines():
        word = line.strip()
        if line.startswith("@"):
            members = groups.setdefault(word, [])
        elif word and not word.startswith("#"):
            members.append(word)
    return groups


def _expand(name: str, groups: dict[str, list[str]]) -> set[str]:
    """The system calls of a name: itself, or a group's members, recursively."""
    if not name.startswith("@"):
        return {name}
    if name not in groups:
        _unsupported(f"systemd-analyze knows no group {name}")
    return set().union(*(_expand(member, groups) for member in groups[name]))


def _allowed(filters: list[str]) -> set[str]:
    groups = _groups()
    allowed: set[str] | None = None
    for spec in filters:
        deny = spec.startswith("~")
        calls = set().union(*(_expand(n, groups) for n in spec.lstrip("~").split()))
        if deny:
            allowed = (allowed or set()) - calls
        else:
            allowed = calls if allowed is None else allowed | calls
    return allowed or set()


def _load_seccomp(allowed: set[str]) -> None:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        _unsupported("libseccomp.so.2 not found")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]

    context = lib.seccomp_init(_SCMP_ACT_ERRNO | 1)  # EPERM
    for name in sorted(allowed):
        number = lib.seccomp_syscall_resolve_name(name.encode())
        # A name this architecture lacks (say arm_fadvise64_64) is skipped.
        if number >= 0 and lib.seccomp_rule_add(context, _SCMP_ACT_ALLOW, number, 0):
            _unsupported(f"seccomp_rule_add failed for {name}")
    if lib.seccomp_load(context) != 0:
        _unsupported("seccomp_load failed")


def main() -> None:
    """Apply the rules asked for, then exec the command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mdwe", action="store_true")
    parser.add_argument("--syscalls", action="append", default=[])
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()

    if args.mdwe:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
            _unsupported(f"PR_SET_MDWE: {os.strerror(ctypes.get_errno())}")
    if args.syscalls:
        try:
            allowed = _allowed(args.syscalls)
        except (OSError, subprocess.CalledProcessError) as exc:
            _unsupported(f"systemd-analyze syscall-filter failed: {exc}")
        _load_seccomp(allowed)

    os.execv(args.command[0], args.command)


if __name__ == "__main__":
    main()
