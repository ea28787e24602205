"""A libvirt-python compatible face over any xvirt driver.

Existing libvirt-python scripts run unmodified on xvirt, through
``xvirt compat -- python script.py`` (which makes ``import libvirt`` resolve
here) or ``import xvirt.compat.libvirt as libvirt``. Built on xvirt's public
API only, so it serves every driver: ``sim:``, ``xend:``/``xend+unix:`` and
``libvirt:`` (any other URI, e.g. ``test:///default``, is a libvirt URI and
goes to the libvirt driver).

Scripts see libvirtError only (never an xvirt error or AttributeError); a
call the face does not serve raises libvirtError VIR_ERR_NO_SUPPORT naming
it. The ``VIR_*`` constants have libvirt 9.0.0's values.
"""

from __future__ import annotations

import contextlib as _contextlib
import os as _os
import sys as _sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import xvirt
from xvirt.compat import _constants as _c
from xvirt.compat._connect import LIB_VERSION, virConnect
from xvirt.compat._constants import *  # noqa: F403 - the VIR_* names are the API
from xvirt.compat._domain import virDomain
from xvirt.compat._errors import ErrorTuple, error, get_last, libvirtError, register_handler
from xvirt.compat._errors import reset_last as _reset_last
from xvirt.compat._events import LOOP as _LOOP
from xvirt.compat._translate import backend_for as _backend_for
from xvirt.compat._translate import translate as _translate
from xvirt.compat._unsupported import unsupported as _unsupported
from xvirt.compat._uri import resolve as _resolve
from xvirt.errors import InvalidArgumentError, UnsupportedError, XvirtError
from xvirt.libvirt_api.binding import event_impl_registered as _event_impl_registered
from xvirt.libvirt_api.binding import is_face as _is_face
from xvirt.libvirt_api.binding import real_libvirt as _real_libvirt

# The classes a script sees are libvirt's by name, as on libvirt-python.
virConnect.__module__ = virDomain.__module__ = "libvirt"

#: Marks this module as the face (xvirt.libvirt_api.binding tells it from the real binding).
__xvirt_face__ = True

__all__ = [
    "libvirtError", "virConnect", "virDomain",
    "open", "openReadOnly", "openAuth", "getVersion",
    "registerErrorHandler", "virGetLastError", "virResetLastError",
    "virGetLastErrorMessage", "virGetLastErrorCode", "virGetLastErrorDomain",
    "virEventRegisterDefaultImpl", "virEventRegisterImpl", "virEventRunDefaultImpl",
    "virEventAddTimeout", "virEventUpdateTimeout", "virEventRemoveTimeout",
    *[name for name in dir(_c) if name.startswith("VIR_")],
]


# -- connections ----------------------------------------------------------------------------

def _open(name: object, readonly: bool, func: str,
          auth: Sequence[Any] | None = None) -> virConnect:
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{func}() argument 1 must be str or None, not {type(name).__name__}")
    if isinstance(name, str) and "\x00" in name:
        raise ValueError("embedded null character")
    given, target = _resolve(name)
    backend = _backend_for(target)
    try:
        xconn = xvirt.open(target, readonly=readonly, auth=auth)
    except InvalidArgumentError as exc:
        if exc.libvirt_code is not None:
            raise _translate(exc, backend, func) from None
        raise error(_c.VIR_ERR_NO_CONNECT, _c.VIR_FROM_NONE, f"{given}: {exc.message}") from None
    except XvirtError as exc:
        raise _translate(exc, backend, func) from None
    if backend.libvirt:
        from xvirt.compat._passthrough import LibvirtConnect

        return LibvirtConnect(xconn, given)
    return virConnect(xconn, given)


def open(name: str | None = None) -> virConnect:
    """A read-write connection; ``name`` None: $LIBVIRT_DEFAULT_URI, $XVIRT_COMPAT_URI,
    else ``sim:///default``."""
    return _open(name, False, "virConnectOpen")


def openReadOnly(name: str | None = None) -> virConnect:
    """A read-only connection: mutating calls raise VIR_ERR_OPERATION_DENIED."""
    return _open(name, True, "virConnectOpenReadOnly")


def openAuth(uri: str | None, auth: Sequence[Any], flags: int = 0) -> virConnect:
    """``auth`` is ``[credtypes, callback, cbdata]``: on a ``libvirt:`` URI libvirt calls
    ``callback`` for the credentials it needs (at each connection xvirt opens to it);
    xvirt's own hosts ask for none. VIR_CONNECT_RO in ``flags`` opens read-only."""
    if not isinstance(auth, Sequence) or isinstance(auth, str) or len(auth) != 3:
        raise TypeError("openAuth: auth must be [credtypes, callback, cbdata]")
    if not isinstance(flags, int):
        raise TypeError(f"an integer is required for flags, not {type(flags).__name__}")
    allowed = _c.VIR_CONNECT_RO | _c.VIR_CONNECT_NO_ALIASES
    if flags & ~allowed or flags < 0:
        raise error(_c.VIR_ERR_INVALID_ARG, _c.VIR_FROM_NONE,
                    f"unsupported flags (0x{flags & ~allowed:x}) in function virConnectOpenAuth")
    return _open(uri, bool(flags & _c.VIR_CONNECT_RO), "virConnectOpenAuth", list(auth))


def getVersion(name: str | None = None) -> int | tuple[int, int]:
    """The library version; with a driver name, ``(library version, driver version)``
    as libvirt-python gives it. libvirt's own where the binding is installed, else
    9.0.0 (whose API the face follows)."""
    lv = _binding()
    if lv is not None:
        result: int | tuple[int, int] = lv.getVersion() if name is None else lv.getVersion(name)
        return result
    if name is None:
        return LIB_VERSION
    if not isinstance(name, str):
        raise TypeError(f"getVersion() argument must be str or None, not {type(name).__name__}")
    return LIB_VERSION, LIB_VERSION


# -- errors -------------------------------------------------------------------------------------

def registerErrorHandler(f: Callable[[Any, ErrorTuple], object] | None, ctx: Any) -> int:
    """``f(ctx, err)`` for every error (err: libvirt's 9-tuple); None: print to stderr."""
    return register_handler(f, ctx)


def virGetLastError() -> ErrorTuple | None:
    return get_last()


def virResetLastError() -> None:
    _reset_last()
    lv = _binding()
    if lv is not None:
        lv.virResetLastError()


def virGetLastErrorMessage() -> str:
    last = get_last()
    return "no error" if last is None else last[2]


def virGetLastErrorCode() -> int:
    last = get_last()
    return _c.VIR_ERR_OK if last is None else last[0]


def virGetLastErrorDomain() -> int:
    last = get_last()
    return _c.VIR_FROM_NONE if last is None else last[1]


# -- the event loop -----------------------------------------------------------------------------
# Where the binding is installed, the loop a script registers is libvirt's own (its
# default implementation, or the script's through virEventRegisterImpl, e.g. libvirtaio):
# libvirt's events of every ID come through it, and the face's own deliveries (events of
# xvirt's hosts) wake it through a pipe. If xvirt's loop already runs libvirt's events
# (a libvirt: URI was opened first), it is kept: libvirt cannot move connections between
# loops, and virEventRunDefaultImpl then runs the face's deliveries and timers.


class _Loops:
    """Which loop runs what, decided at the script's first registration."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.libvirt_runs_script = False  # libvirt's loop runs the script's timers and events
        self.default = False  # ... and it is libvirt's default implementation
        self.pipe: tuple[int, int] | None = None

    def attach(self, lv: Any) -> None:
        """(Lock held) The face's deliveries wake libvirt's loop from now on."""
        self.libvirt_runs_script = True
        read_fd, write_fd = _os.pipe()
        _os.set_blocking(read_fd, False)
        _os.set_blocking(write_fd, False)
        self.pipe = (read_fd, write_fd)
        lv.virEventAddHandle(read_fd, lv.VIR_EVENT_HANDLE_READABLE, self._drain, None)
        _LOOP.waker = self._wake

    def _wake(self) -> None:
        if self.pipe is not None:
            with _contextlib.suppress(BlockingIOError):
                _os.write(self.pipe[1], b"x")

    def _drain(self, _watch: int, fd: int, _events: int, _opaque: Any) -> None:
        with _contextlib.suppress(BlockingIOError):
            while _os.read(fd, 512):
                pass
        _LOOP.run_ready()


_LOOPS = _Loops()


def virEventRegisterDefaultImpl() -> int:
    """Register the default loop: needed before domainEventRegisterAny, as in libvirt."""
    _LOOP.registered = True
    lv = _binding()
    if lv is None:
        return 0
    with _LOOPS.lock:
        if not _LOOPS.libvirt_runs_script and not _event_impl_registered(lv):
            lv.virEventRegisterDefaultImpl()
            _LOOPS.default = True
            _LOOPS.attach(lv)
    return 0


def virEventRegisterImpl(addHandle: Callable[..., Any], updateHandle: Callable[..., Any],
                         removeHandle: Callable[..., Any], addTimeout: Callable[..., Any],
                         updateTimeout: Callable[..., Any],
                         removeTimeout: Callable[..., Any]) -> None:
    """The script's own loop (libvirtaio's, for one): libvirt's, as the binding's."""
    lv = _binding()
    if lv is None:
        raise _unsupported("libvirt", "virEventRegisterImpl", _c.VIR_FROM_EVENT)()
    with _LOOPS.lock:
        lv.virEventRegisterImpl(addHandle, updateHandle, removeHandle, addTimeout,
                                updateTimeout, removeTimeout)
        _LOOP.registered = True
        _LOOPS.default = False
        if _LOOPS.pipe is None:
            _LOOPS.attach(lv)


def virEventRunDefaultImpl() -> int:
    """One iteration: libvirt's default loop where the script registered it; otherwise
    the face's, which blocks (briefly, on a condition) until an event or a timer is
    due and runs their callbacks on this thread."""
    if _LOOPS.default:
        lv = _binding()
        assert lv is not None
        result: int = lv.virEventRunDefaultImpl()
        return result
    return _LOOP.run_once()


def virEventAddTimeout(timeout: int, cb: Callable[[int, Any], object], opaque: Any) -> int:
    """``cb(timer, opaque)`` every ``timeout`` ms (-1: disabled, 0: every iteration)."""
    if not isinstance(timeout, int):
        raise TypeError(f"an integer is required for timeout, not {type(timeout).__name__}")
    lv = _binding() if _LOOPS.libvirt_runs_script else None
    if lv is not None:
        timer: int = lv.virEventAddTimeout(timeout, cb, opaque)
        return timer
    return _LOOP.add_timeout(timeout, cb, opaque)


def virEventUpdateTimeout(timer: int, timeout: int) -> None:
    lv = _binding() if _LOOPS.libvirt_runs_script else None
    if lv is not None:
        lv.virEventUpdateTimeout(timer, timeout)
        return
    _LOOP.update_timeout(timer, timeout)


def virEventRemoveTimeout(timer: int) -> int:
    lv = _binding() if _LOOPS.libvirt_runs_script else None
    if lv is not None:
        result: int = lv.virEventRemoveTimeout(timer)
        return result
    if _LOOP.remove_timeout(timer) < 0:
        raise error(_c.VIR_ERR_INVALID_ARG, _c.VIR_FROM_EVENT,
                    f"no timer with id {timer}")
    return 0


# -- what libvirt's C part calls back by name ---------------------------------------------------
# libvirtmod looks these up in sys.modules["libvirt"], which under ``xvirt compat`` is
# this module: they forward to the real binding the libvirt driver uses.

def _dispatchEventHandleCallback(*args: Any) -> Any:
    return _real_libvirt()._dispatchEventHandleCallback(*args)


def _dispatchEventTimeoutCallback(*args: Any) -> Any:
    return _real_libvirt()._dispatchEventTimeoutCallback(*args)


def _eventInvokeHandleCallback(*args: Any) -> Any:
    return _real_libvirt()._eventInvokeHandleCallback(*args)


def _eventInvokeTimeoutCallback(*args: Any) -> Any:
    return _real_libvirt()._eventInvokeTimeoutCallback(*args)


def _binding() -> ModuleType | None:
    """The real binding, or None where it is not installed."""
    try:
        return _real_libvirt()
    except UnsupportedError:
        return None


def __getattr__(name: str) -> object:
    """Everything else is libvirt-python's own where it is installed (constants,
    functions, the classes of networks, storage, streams...). Without it: unknown
    constants stay AttributeError (a script can test for them), any other name is a
    function that raises VIR_ERR_NO_SUPPORT when called."""
    lv = _binding()
    if lv is not None:
        try:
            value = getattr(lv, name)
        except AttributeError:
            raise AttributeError(f"module 'libvirt' has no attribute {name!r}") from None
        globals()[name] = value  # found once: later lookups are plain
        return value
    if name.startswith("VIR_") or name.startswith("__"):
        raise AttributeError(f"module 'libvirt' (xvirt's face) has no attribute {name!r}")
    return _unsupported("libvirt", name, _c.VIR_FROM_NONE)


def __dir__() -> list[str]:
    lv = _binding()
    return sorted(set(globals()) | (set(dir(lv)) if lv is not None else set()))


# -- loading what a libvirt URI needs, at import as libvirt-python does ---------------------

def _preload() -> None:
    """Load the real binding and the libvirt driver now, when the binding is installed.

    ``import libvirt`` loads libvirt-python's C module (some 20 ms); the face
    would otherwise load it, and the driver, at the first ``open()``, which then
    took 30-55 ms against libvirt's 1-2 ms (docs/benchmarks.md, ``open_cost``).
    Without the binding this does nothing: sim and daemon URIs do not need it."""
    try:
        _real_libvirt()
    except UnsupportedError:
        return
    xvirt._preload_libvirt_driver()
    from xvirt.compat import _passthrough  # noqa: F401 - the face's classes for libvirt:


def _safe_to_preload() -> bool:
    """False while ``xvirt compat``'s shim is still being imported as ``libvirt``: the
    binding would take that half-made module for the real one. The shim preloads
    once it has put the face in its place."""
    current = _sys.modules.get("libvirt")
    return current is None or _is_face(current) or hasattr(current, "virConnect")


if _safe_to_preload():
    _preload()
