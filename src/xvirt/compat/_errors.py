"""libvirtError and libvirt's error reporting: the thread's last error, the global
handler, and the default line on stderr.

Errors are made as libvirt makes them: the error tuple is stored as the
thread's last error, reported (to the registered handler, else one
``libvirt: <domain> error : <message>`` line on stderr), and the exception
built from it, so ``str(e) == e.get_error_message()`` and ``virGetLastError()``
agree with what was raised.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xvirt.compat import _constants as c
from xvirt.errors import UnsupportedError
from xvirt.libvirt_api.binding import real_libvirt

__all__ = [
    "ErrorTuple",
    "arg_error",
    "error",
    "from_binding",
    "get_last",
    "libvirtError",
    "note",
    "raw_error",
    "register_handler",
    "reset_last",
]

#: (code, domain, message, level, str1, str2, str3, int1, int2), as libvirt-python gives it.
ErrorTuple = tuple[int, int, str, int, str | None, str | None, str | None, int, int]

# virErrorMsgStrings' "with info" forms for the codes the face raises.
_FORMATS: dict[int, str] = {
    c.VIR_ERR_INTERNAL_ERROR: "internal error: %s",
    c.VIR_ERR_NO_SUPPORT: "this function is not supported by the connection driver: %s",
    c.VIR_ERR_NO_CONNECT: "no connection driver available for %s",
    c.VIR_ERR_INVALID_CONN: "invalid connection pointer in %s",
    c.VIR_ERR_INVALID_DOMAIN: "invalid domain pointer in %s",
    c.VIR_ERR_INVALID_ARG: "invalid argument: %s",
    c.VIR_ERR_OPERATION_FAILED: "operation failed: %s",
    c.VIR_ERR_XML_ERROR: "XML error: %s",
    c.VIR_ERR_XML_DETAIL: "%s",
    c.VIR_ERR_CONFIG_UNSUPPORTED: "unsupported configuration: %s",
    c.VIR_ERR_NO_TARGET: "missing target information for %s",
    c.VIR_ERR_NO_NAME: "missing name information for %s",
    c.VIR_ERR_OPERATION_DENIED: "operation forbidden: %s",
    c.VIR_ERR_SYSTEM_ERROR: "%s",
    c.VIR_ERR_RPC: "%s",
    c.VIR_ERR_NO_DOMAIN: "Domain not found: %s",
    c.VIR_ERR_AUTH_FAILED: "authentication failed: %s",
    c.VIR_ERR_OPERATION_INVALID: "Requested operation is not valid: %s",
    c.VIR_ERR_ARGUMENT_UNSUPPORTED: "argument unsupported: %s",
    c.VIR_ERR_OPERATION_UNSUPPORTED: "Operation not supported: %s",
}

# virErrorDomain's names, by value (virerror.c), for the default stderr line.
_DOMAIN_NAMES = (
    "", "Xen Driver", "Xen Daemon", "Xen Store", "S-Expression",
    "XML Util", "Domain", "XML-RPC", "Proxy Daemon", "Config File",
    "QEMU Driver", "Network", "Test Driver", "Remote Driver", "OpenVZ Driver",
    "Xen XM Driver", "Linux Statistics", "LXC Driver", "Storage Driver", "Network Driver",
    "Domain Config", "User Mode Linux Driver", "Node Device Driver", "Xen Inotify Driver",
    "Security Driver",
    "VirtualBox Driver", "Network Interface Driver", "Open Nebula Driver", "ESX Driver",
    "Power Hypervisor Driver",
    "Secrets Driver", "CPU Driver", "XenAPI Driver", "Network Filter Driver", "Lifecycle Hook",
    "Domain Snapshot", "Audit Utils", "Sysinfo Utils", "I/O Stream Utils", "VMware Driver",
    "Event Loop", "Xen Light Driver", "Lock Driver", "Hyper-V Driver", "Capabilities Utils",
    "URI Utils", "Authentication Utils", "DBus Utils", "Parallels Cloud Server",
    "Device Config",
    "SSH transport layer", "Lock Space", "Init control", "Identity", "Cgroup",
    "Access Manager", "Systemd", "Bhyve", "Crypto", "Firewall",
    "Polkit", "Thread jobs", "Admin Interface", "Log Manager", "Xen XL Config",
    "Perf", "Libssh transport layer", "Resource control", "FirewallD", "Domain Checkpoint",
    "TPM", "BPF", "Cloud-Hypervisor Driver",
)

_local = threading.local()
_handler_lock = threading.Lock()
_handler: tuple[Callable[[Any, ErrorTuple], object], Any] | None = None


def get_last() -> ErrorTuple | None:
    """The calling thread's last error (libvirt keeps it per thread)."""
    last: ErrorTuple | None = getattr(_local, "last", None)
    return last


def reset_last() -> None:
    _local.last = None


def register_handler(f: Callable[[Any, ErrorTuple], object] | None, ctx: Any) -> int:
    """``f(ctx, err)`` is called for every error from now on; None restores the
    default (one line on stderr)."""
    global _handler
    if f is not None and not callable(f):
        raise TypeError("registerErrorHandler: the handler must be callable or None")
    with _handler_lock:
        _handler = None if f is None else (f, ctx)
    return 1


def _report(err: ErrorTuple) -> None:
    with _handler_lock:
        handler = _handler
    if handler is None:
        name = _DOMAIN_NAMES[err[1]] if 0 <= err[1] < len(_DOMAIN_NAMES) else "Unknown"
        level = {c.VIR_ERR_WARNING: "warning", c.VIR_ERR_ERROR: "error"}.get(err[3], "")
        print(f"libvirt: {name} {level} : {err[2]}", file=sys.stderr)
        return
    f, ctx = handler
    try:
        f(ctx, err)
    except Exception:  # a broken handler must not replace the error it reports
        traceback.print_exc()


class _FaceError(Exception):
    """libvirt-python's exception where the binding is not installed: the message and
    codes of the thread's last error."""

    def __init__(self, defmsg: str, conn: object = None, dom: object = None,
                 net: object = None, pool: object = None, vol: object = None) -> None:
        err = get_last()
        Exception.__init__(self, defmsg if err is None else err[2])
        self.err: ErrorTuple | None = err

    def _field(self, i: int) -> Any:
        return None if self.err is None else self.err[i]

    def get_error_code(self) -> int | None:
        return self._field(0)  # type: ignore[no-any-return]

    def get_error_domain(self) -> int | None:
        return self._field(1)  # type: ignore[no-any-return]

    def get_error_message(self) -> str | None:
        return self._field(2)  # type: ignore[no-any-return]

    def get_error_level(self) -> int | None:
        return self._field(3)  # type: ignore[no-any-return]

    def get_str1(self) -> str | None:
        return self._field(4)  # type: ignore[no-any-return]

    def get_str2(self) -> str | None:
        return self._field(5)  # type: ignore[no-any-return]

    def get_str3(self) -> str | None:
        return self._field(6)  # type: ignore[no-any-return]

    def get_int1(self) -> int | None:
        return self._field(7)  # type: ignore[no-any-return]

    def get_int2(self) -> int | None:
        return self._field(8)  # type: ignore[no-any-return]


def _error_class() -> type[_FaceError]:
    """The binding's own libvirtError where it is installed, so that one ``except
    libvirt.libvirtError`` catches what the face raises and what libvirt raises through
    it (calls passed through, the companion modules); the face's class otherwise."""
    try:
        real: type[_FaceError] = real_libvirt().libvirtError
    except UnsupportedError:
        return _FaceError
    return real


if TYPE_CHECKING:
    libvirtError = _FaceError
else:
    libvirtError = _error_class()


def _made(err: ErrorTuple) -> libvirtError:
    """An exception carrying ``err``, without the binding's constructor (which reads
    libvirt's own last error, not the face's)."""
    exc = libvirtError.__new__(libvirtError)
    Exception.__init__(exc, err[2])
    exc.err = err
    return exc


def note(exc: libvirtError) -> libvirtError:
    """An error libvirt raised through the face (a call passed through): made the
    thread's last error and reported, as the face's own are."""
    err = getattr(exc, "err", None)
    if isinstance(err, (tuple, list)) and len(err) == 9:
        _local.last = tuple(err)
        _report(_local.last)
    return exc


def _raise_tuple(err: ErrorTuple) -> libvirtError:
    _local.last = err
    _report(err)
    return _made(err)


def error(code: int, domain: int, info: str | None = None) -> libvirtError:
    """The libvirtError libvirt makes for ``code`` with ``info`` (its ``%s``):
    message in libvirt's words, str1 the format, str2 the info."""
    fmt = _FORMATS.get(code, "%s")
    if info is None:  # libvirt's bare form, e.g. "Domain not found"
        return raw_error(code, domain, fmt.replace(": %s", "").replace(" %s", ""))
    return _raise_tuple((code, domain, fmt % info, c.VIR_ERR_ERROR, fmt, info, None, -1, -1))


def arg_error(func: str, param: str, message: str,
              code: int = c.VIR_ERR_INVALID_ARG, domain: int = c.VIR_FROM_DOMAIN) -> libvirtError:
    """An argument check's error, as libvirt's virCheck* macros fill it in
    (str1 the function, str2 the parameter, int1 and int2 zero)."""
    return _raise_tuple((code, domain, message, c.VIR_ERR_ERROR, func, param, None, 0, 0))


def from_binding(exc: Any) -> libvirtError:
    """The real binding's libvirtError as the face's, every field kept (libvirt said it)."""
    err = getattr(exc, "err", None)
    if isinstance(err, (tuple, list)) and len(err) == 9:
        code, domain, message, level, str1, str2, str3, int1, int2 = err
        return _raise_tuple((int(code), int(domain), str(message), int(level), str1, str2,
                             str3, int(int1), int(int2)))
    return raw_error(c.VIR_ERR_INTERNAL_ERROR, c.VIR_FROM_NONE, str(exc))


def raw_error(code: int, domain: int, message: str) -> libvirtError:
    """An error whose message is already in libvirt's words (it came from libvirt)."""
    return _raise_tuple((code, domain, message, c.VIR_ERR_ERROR, message, None, None, -1, -1))
