"""The daemon's control plane: HTTP in xend's shape, as a WSGI application.

Routes, status codes and bodies follow xend as libvirt used it
(realdata/xend/PROTOCOL.md): ``/xend/node/``, ``/xend/domain[?detail=1]``,
``/xend/domain/<dom>``, POST ops with ``op=`` form bodies, 404 plain text for
an unknown domain, 406 for a missing or repeated ``op``, 501 for an unknown
one, ``(xend.err '...')`` for failures. Every answer also carries the host's
boot identity and generation in ``X-Xvirt-Boot`` / ``X-Xvirt-Generation``
headers, and failures an ``X-Xvirt-Error`` kind, so an xvirt client learns what
it needs without changing a body an xend client would read.

Managed domains (xend >= 3.0.4's ``xm new``/``start``/``delete``), as xend
served them:

* ``GET /xend/domain`` lists the live domains (xend's default filter,
  ``running``; ``state=active`` is the same), ``?state=halted`` (or
  ``inactive``) the defined domains that are not running, ``?state=all``
  both, live ones first in ID order (xend 3.1's ``all``); ``paused``,
  ``blocked``, ``crashed`` filter the live ones. ``detail=1`` gives records for
  names. An inactive domain's record has no ``domid`` (how libvirt tells it is
  inactive), the state ``------`` and no ``cpu_time``.
* ``GET /xend/domain/<dom>`` finds a defined, inactive domain too, by name or
  UUID; names win over IDs and UUIDs among live and defined domains alike.
* Every record the ``/xend/`` routes answer says whether its domain is
  persistent (managed: its definition outlives it) in the extension field
  ``(xvirt_persistent 1)`` or ``0``, named like the node record's ``xvirt_``
  fields (real xend has none).
* ``POST /xend/domain/`` with ``op=new`` and ``config=(vm ...)`` defines (or
  replaces the definition of the config's UUID) with exactly the devices the
  config names (none if none: ``op=create``'s defaults are not added): 201
  Created, a ``Location`` and the domain's record, as ``op=create``.
* ``POST /xend/domain/<dom>`` with ``op=start`` boots a defined domain, with
  ``op=delete`` removes a definition (refused while it runs): 202 and no body.
  ``<dom>`` is a name or a UUID (an ID names a running domain, which neither
  op takes); an ``expected_uuid`` field, when given, must be the UUID ``<dom>``
  names, and with ``<dom>`` that very UUID the host acts on it without looking
  at names (a domain named like another's UUID cannot take the call over). All
  three need the token over TCP, as ``create`` does.
* Other ops on an inactive domain are refused (500, ``failed``: it does not
  run), not a 404 (it exists).

Extensions, all under ``/xvirt/``: a batch resolve (C5), ``expected_uuid`` on
every op so the host checks and acts in one step (C4), numbered events, the
data plane over HTTP (for clients that cannot reach the fast channel), the
domains' statistics (``GET /xvirt/stats?groups=block,net[&uuid=U...]``, JSON
in xvirt.wire.stats_codec: the table carries none), where the fast channel is,
and the host's own administration (the outside world the conformance kit plays:
creating, crashing, rebooting the host; defining, starting and undefining as the
host's own acts, with ``GET /xvirt/host/defined`` the defined, shut-off domains'
records).

The application is built per listener: ``trusted`` for the 0600 unix socket;
over TCP every mutating request needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

from xvirt.clock import Clock
from xvirt.errors import (
    InvalidArgumentError,
    NoDomainError,
    OperationFailedError,
    ProtocolError,
    XvirtError,
)
from xvirt.host.hypervisor import HostModel, LiveDomain
from xvirt.hotpath import GcPause
from xvirt.model import (
    DOMID_FIRST_RESERVED,
    Affect,
    DomainState,
    MetadataKind,
    SchedulerParams,
    check_image_name,
    parse_uuid,
)
from xvirt.planes import DataRow, Definition, DomainConfig, Op, Resolved, Unanswered
from xvirt.stats import StatGroup
from xvirt.wire import records, sxp
from xvirt.wire.dataplane import encode_table
from xvirt.wire.events import encode_events
from xvirt.wire.stats_codec import decode_groups, encode_stats

__all__ = ["JOURNAL_PAGE", "JOURNAL_PAGE_MAX", "ControlApp", "ControlSettings", "Refusals"]

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

MAX_BODY = 1024 * 1024  # xend allowed 10000 bytes; a batch resolve of 5000 UUIDs needs more
MAX_EVENT_WAIT_S = 10.0
#: Journal entries per answer of ``GET /xvirt/host/journal`` unless ``limit=`` says
#: fewer; the most it says. A page stays well under a megabyte (entries are bounded).
JOURNAL_PAGE = 1000
JOURNAL_PAGE_MAX = 10_000
#: Characters of an unknown op's name a refusal's journal entry keeps (escaped): a
#: client chooses the name, up to the 1 MiB body limit, and must not choose how much
#: the journal grows.
_OP_SHOWN = 32
_SXP = "application/sxp"
_REASONS = {200: "OK", 201: "Created", 202: "Accepted", 400: "Bad Request",
            401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            406: "Not Acceptable", 409: "Conflict", 411: "Length Required",
            413: "Request Entity Too Large", 500: "Internal Server Error",
            501: "Not Implemented"}

# xend op name -> (xvirt op, status xend answered with)
_DOMAIN_OPS: dict[str, tuple[Op, int]] = {
    "pause": (Op.PAUSE, 200),
    "unpause": (Op.RESUME, 200),
    "destroy": (Op.DESTROY, 202),
    "save": (Op.SAVE, 202),
    "rename": (Op.RENAME, 202),
    "migrate": (Op.MIGRATE, 202),
}
_SHUTDOWN_REASONS = {"poweroff": Op.SHUTDOWN, "halt": Op.SHUTDOWN, "reboot": Op.REBOOT}
#: xend's ops on a managed domain, journalled under these names (as the host does).
_MANAGED_OPS = frozenset({"start", "delete"})
#: Ops that change a domain's vCPUs, scheduler share or metadata, by UUID.
_SETTINGS_OPS = frozenset({"set_vcpus", "domain_sched_credit_set", "xvirt_set_metadata"})
_METADATA_TYPES = {"description": MetadataKind.DESCRIPTION, "title": MetadataKind.TITLE,
                   "element": MetadataKind.ELEMENT}
_AFFECTS = {"current": Affect.CURRENT, "live": Affect.LIVE, "config": Affect.CONFIG,
            "both": Affect.LIVE | Affect.CONFIG}
#: ``GET /xend/domain?state=``: the filters of live domains other than all of them.
_LIVE_FILTERS = {"paused": DomainState.PAUSED, "blocked": DomainState.BLOCKED,
                 "crashed": DomainState.CRASHED}
#: How often an answer read in several steps (a listing with persistence, ``state=all``,
#: a domain that started between two reads) is read again when an event came in
#: between, before answering from the last reads.
_CONSISTENT_TRIES = 4
#: The administration route's ops (``POST /xvirt/host``), named as such in the
#: journal when refused; any other name is journalled as ``unknown:<prefix>``.
_HOST_OPS = frozenset({
    "create", "destroy", "shutdown", "pause", "resume", "crash", "stall", "unstall",
    "reboot", "migrate", "save", "restore", "rename", "set_blocked", "reboot_host",
    "refuse_commits", "define", "start", "undefine"})


class Refusals:
    """Refused requests counted by kind, for the whole daemon (both listeners share
    one): the journal keeps the newest entries only, so a flood would hide how many
    there were. Kinds are the ``X-Xvirt-Error`` kinds, with ``auth`` split by reason
    (``auth:no-token``, ``auth:wrong-token``, ``auth:read-only``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


def _op_label(op: str, known: frozenset[str]) -> str:
    """The op name a refusal is journalled under: a known name as it is, anything else
    ``unknown:`` and an escaped prefix of at most ``_OP_SHOWN`` characters (plus how
    many were left out), so an entry's size never depends on what a client sent."""
    if op in known:
        return op
    shown = op[:_OP_SHOWN].encode("unicode_escape").decode("ascii")[:2 * _OP_SHOWN]
    more = f"...(+{len(op) - _OP_SHOWN} chars)" if len(op) > _OP_SHOWN else ""
    return f"unknown:{shown}{more}"


@dataclass(frozen=True)
class ControlSettings:
    token: str | None = None  # None: TCP listeners refuse every mutating request
    control_latency_s: float = 0.0
    fast_socket: str | None = None
    table_path: str | None = None
    instance: str = ""
    max_event_waiters: int = 4  # long polls may hold at most this many workers
    #: Fault injection (``POST /xvirt/host op=refuse_commits count=N``): the store
    #: refuses the next N commits. None: the route answers 501.
    refuse_commits: Callable[[int, int], None] | None = None
    #: Shared by every listener built with these settings (``GET /xvirt/host/refusals``).
    refusals: Refusals = field(default_factory=Refusals)


class _Answer(Exception):
    """Raised by a handler to answer at once (errors, mostly)."""

    def __init__(self, status: int, body: str = "", *, kind: str | None = None,
                 content_type: str = _SXP, headers: Iterable[tuple[str, str]] = (),
                 tally: str | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.kind = kind
        self.tally = tally or kind  # what the refusal is counted as
        self.content_type = content_type
        self.headers = list(headers)


#: Held while a statistics answer is made (see xvirt.hotpath.GcPause): at 5000
#: domains, about 35 of a request's 125 ms went to collections, some under the host's lock.
_gc_paused = GcPause()


def _stats_answer(host: HostModel, groups: frozenset[StatGroup],
                  uuids: list[str] | None) -> str:
    """The statistics answer's text; its figures are gone when this returns."""
    return encode_stats(host.domain_stats(groups, uuids))


def _err(status: int, message: str, kind: str) -> _Answer:
    return _Answer(status, sxp.dumps(records.error_sexpr(message)), kind=kind)


def _translate(exc: XvirtError) -> _Answer:
    if isinstance(exc, NoDomainError):
        return _Answer(404, exc.message, kind="no-domain", content_type="text/plain")
    if isinstance(exc, InvalidArgumentError):
        return _err(400, exc.message, "invalid")
    if isinstance(exc, ProtocolError):
        return _err(400, exc.message, "protocol")
    return _err(500, exc.message, "failed")


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    trusted: bool
    authorization: str


def _one(fields: Mapping[str, list[str]], key: str, *, required: bool = True) -> str | None:
    values = fields.get(key)
    if not values:
        if required:
            raise _err(400, f"missing field {key!r}", "invalid")
        return None
    if len(values) > 1:
        raise _err(400, f"field {key!r} given {len(values)} times", "invalid")
    return values[0]


def _int(text: str | None, field: str, *, low: int = 0, high: int = 2**62) -> int:
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise _err(400, f"field {field!r} must be a decimal number, not {text!r}", "invalid")
    value = int(text)
    if not low <= value <= high:
        raise _err(400, f"field {field!r} must be within {low}..{high}, not {value}", "invalid")
    return value


def _record(dom: LiveDomain, now: float, *, runtime: bool = True,
            persistent: bool | None = None) -> sxp.Sx:
    return records.domain_record(
        domid=dom.id, uuid=dom.uuid, name=dom.name, memory_kib=dom.memory_kib,
        max_memory_kib=dom.max_memory_kib, vcpus=dom.vcpus, os_type=dom.os_type,
        state=dom.state if runtime else None,
        cpu_time_ns=dom.cpu_time(now) if runtime else None, disks=dom.disks, nics=dom.nics,
        persistent=persistent, max_vcpus=dom.vcpu_limit,
        sched=SchedulerParams(dom.sched_weight, dom.sched_cap), metadata=dom.metadata,
    )


def _inactive_record(d: Definition) -> sxp.Sx:
    """A defined domain that is not running, as xend >= 3.0.4 wrote it: no domid."""
    config = d.config
    if config is None:
        raise OperationFailedError(f"the host gave no configuration for domain {d.name!r}",
                                   uuid=d.uuid, name=d.name, op="lookup")
    return records.domain_record(
        domid=None, uuid=d.uuid, name=d.name, memory_kib=config.memory_kib,
        max_memory_kib=config.max_memory_kib, vcpus=config.vcpus, os_type=config.os_type,
        state=DomainState.SHUTOFF, cpu_time_ns=None, disks=config.disks, nics=config.nics,
        persistent=d.persistent)


def _affect(text: str | None) -> Affect:
    """An ``affect=`` field: current (the default), live, config or both."""
    found = _AFFECTS.get(text or "current")
    if found is None:
        raise _err(400, f"field 'affect' must be one of {', '.join(_AFFECTS)}, not {text!r}",
                   "invalid")
    return found


def _as_uuid(key: str) -> str | None:
    """``key`` as a canonical UUID, or None when it is not one."""
    try:
        return parse_uuid(key)
    except InvalidArgumentError:
        return None


def _not_running(d: Definition, op: str) -> OperationFailedError:
    return OperationFailedError(f"domain {d.name!r} is not running (it is defined, shut off)",
                                uuid=d.uuid, name=d.name, op=op)


def _config(d: Resolved) -> DomainConfig:
    """What a resolve answer writes; the host model always knows its own domains'."""
    if d.config is None:
        raise OperationFailedError(f"the host gave no configuration for domain {d.name!r}",
                                   domid=d.id, uuid=d.uuid, name=d.name, op="resolve")
    return d.config


class ControlApp:
    """The WSGI application for one listener."""

    def __init__(self, host: HostModel, settings: ControlSettings, *, trusted: bool,
                 clock: Clock | None = None) -> None:
        self.host = host
        self.settings = settings
        self.trusted = trusted
        self._clock = clock or host.clock
        self._waiters = threading.BoundedSemaphore(max(1, settings.max_event_waiters))

    # -- WSGI ------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        boot, generation = self.host.boot_id, self.host.generation
        tally: str | None = None
        try:
            status, body, headers = self._handle(environ)
            kind = None
            content_type = _SXP
        except _Answer as answer:
            status, body, headers = answer.status, answer.body, answer.headers
            kind, content_type, tally = answer.kind, answer.content_type, answer.tally
        except XvirtError as exc:
            translated = _translate(exc)
            status, body, headers = translated.status, translated.body, translated.headers
            kind, content_type, tally = translated.kind, translated.content_type, translated.tally
        if tally:
            self.settings.refusals.count(tally)
        data = body.encode("utf-8")
        out = [("Content-Type", content_type), ("Content-Length", str(len(data))),
               ("Cache-Control", "no-cache"), ("Pragma", "no-cache"), ("Expires", "-1")]
        for name, value in headers:
            if name == "X-Xvirt-Boot":
                boot = value
            elif name == "X-Xvirt-Generation":
                generation = int(value)
            else:
                out.append((name, value))
        out += [("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(generation))]
        if kind:
            out.append(("X-Xvirt-Error", kind))
        start_response(f"{status} {_REASONS.get(status, 'Error')}", out)
        return [data]

    def _handle(self, environ: dict[str, Any]) -> tuple[int, str, list[tuple[str, str]]]:
        req = self._parse(environ)
        path = req.path
        if path.startswith("/xend/"):
            self._control_latency()
            if path in ("/xend/node", "/xend/node/"):
                return self._node(req)
            if path in ("/xend/domain", "/xend/domain/"):
                if req.method == "POST":
                    return self._domain_dir_post(req)
                return self._list(req)
            if path.startswith("/xend/domain/"):
                key = path[len("/xend/domain/"):]
                return self._domain_post(req, key) if req.method == "POST" else self._domain(
                    req, key)
        elif path.startswith("/xvirt/"):
            route = path[len("/xvirt/"):]
            if route == "resolve":
                self._control_latency()
                return self._resolve(req)
            if route == "events":
                return self._events(req)
            if route == "table" or route.startswith("table/"):
                return self._table(req, route[len("table/"):] if "/" in route else None)
            if route == "fast":
                return self._fast(req)
            if route == "stats":
                return self._stats(req)
            if route in ("node/memory", "node/cpu"):
                self._control_latency()
                return self._node_stats(req, route[len("node/"):])
            if route == "host" or route.startswith("host/"):
                return self._host(req, route[len("host/"):] if "/" in route else "")
        raise _Answer(404, f"no such resource: {path}", kind="not-found",
                      content_type="text/plain")

    def _parse(self, environ: dict[str, Any]) -> _Request:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "POST", "HEAD"):
            raise _Answer(405, sxp.dumps(records.error_sexpr(f"method {method} not allowed")),
                          kind="invalid", headers=[("Allow", "GET, POST")])
        try:
            path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
            query = self._fields(environ.get("QUERY_STRING", ""))
        except UnicodeError:
            raise _err(400, "the request path or query is not UTF-8", "invalid") from None
        form: dict[str, list[str]] = {}
        if method == "POST":
            length_text = environ.get("CONTENT_LENGTH") or "0"
            if not (length_text.isascii() and length_text.isdigit()):  # not "²": int() refuses
                raise _err(400, f"bad Content-Length {length_text!r}", "invalid")
            length = int(length_text)
            if length > MAX_BODY:
                raise _err(413, f"request body of {length} bytes exceeds {MAX_BODY}", "invalid")
            raw = environ["wsgi.input"].read(length)
            try:
                form = self._fields(raw.decode("utf-8"))
            except UnicodeError:
                raise _err(400, "the request body is not UTF-8", "invalid") from None
        return _Request(method, path, query, form, self.trusted,
                        environ.get("HTTP_AUTHORIZATION", ""))

    @staticmethod
    def _fields(text: str) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=20000)
        except ValueError as exc:
            raise _err(400, f"malformed form fields: {exc}", "invalid") from None
        for key, value in pairs:
            if "\x00" in key or "\x00" in value:
                raise _err(400, "NUL byte in a form field", "invalid")
            out.setdefault(key, []).append(value)
        return out

    def _control_latency(self) -> None:
        if self.settings.control_latency_s > 0:
            self._clock.sleep(self.settings.control_latency_s)

    def _authorize(self, req: _Request, op: str, domid: int = -1, uuid: str = "") -> None:
        """Mutations over TCP need the bearer token; a refusal is journalled."""
        if req.trusted:
            return
        token = self.settings.token
        scheme, _, given = req.authorization.partition(" ")
        if scheme.lower() != "bearer":  # auth schemes are case-insensitive (RFC 9110)
            given = ""
        if token is not None and given and hmac.compare_digest(given.encode(), token.encode()):
            return
        reason, tally = ("no token", "auth:no-token") if not given else (
            "wrong token", "auth:wrong-token")
        if token is None:
            reason = "this listener takes no mutating requests (no token file)"
            tally = "auth:read-only"
        self.host.journal_refusal(op, domid, uuid, f"not authenticated ({reason})")
        raise _Answer(401, sxp.dumps(records.error_sexpr(
            f"authentication required for {op}: {reason}")), kind="auth",
            headers=[("WWW-Authenticate", 'Bearer realm="xvirt"')], tally=tally)

    # -- xend routes -----------------------------------------------------------------------

    def _node(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        if req.method == "POST":
            op = self._op(req)
            if op != "reboot":
                raise _Answer(501, f"Operation not implemented: {op}", kind="unsupported",
                              content_type="text/plain")
            self._authorize(req, "reboot_host")
            self.host.reboot_host()
            return 202, "", []
        info = self.host.node_info()
        fields: dict[str, str | int] = {
            "system": "Linux", "host": info.hostname, "release": "6.1.0-xvirt",
            "version": "#1 SMP", "machine": info.arch, "nr_cpus": info.cpus,
            "nr_nodes": info.nodes, "cores_per_socket": info.cores_per_socket,
            "threads_per_core": info.threads_per_core, "cpu_mhz": info.cpu_mhz,
            "total_memory": info.memory_kib // 1024, "free_memory": info.free_memory_kib // 1024,
            "total_memory_kib": info.memory_kib, "free_memory_kib": info.free_memory_kib,
            "node_to_cpu": f"node0:0-{info.cpus - 1}", "xen_major": 4, "xen_minor": 17,
            "xen_extra": ".0-xvirt", "xen_caps": self.host.xen_caps,
            "xen_scheduler": "credit", "xen_pagesize": 4096, "xend_config_format": 4,
            "xvirt_version": info.version, "xvirt_boot_id": info.boot_id,
            "xvirt_image_dir": os.path.abspath(self.host.image_dir),
        }
        return 200, sxp.dumps(records.node_record(fields)), [("X-Xvirt-Boot", info.boot_id)]

    def _list(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        if req.method == "POST":
            raise _Answer(405, "", kind="invalid")
        # xend's default filter is "running": the live domains (see the module's notes)
        state = _one(req.query, "state", required=False) or "running"
        if state not in ("running", "active", "halted", "inactive", "all", *_LIVE_FILTERS):
            raise _err(400, f"unknown state filter {state!r} (running, active, halted, "
                            f"inactive, all, {', '.join(_LIVE_FILTERS)})", "invalid")
        detail = _one(req.query, "detail", required=False) == "1"
        boot, gen, now, doms, persistent, defs = self._view(
            live=state not in ("halted", "inactive"), inactive=state in ("halted", "inactive",
                                                                         "all"),
            persistence=detail)
        wanted = _LIVE_FILTERS.get(state)
        if wanted is not None:
            doms = tuple(d for d in doms if d.state is wanted)
        body: list[sxp.Sx] = []
        if detail:
            body += [_record(d, now, persistent=d.uuid in persistent) for d in doms]
            body += [_inactive_record(d) for d in defs]
        else:
            body += [d.name for d in doms] + [d.name for d in defs]
        return 200, sxp.dumps(body), [("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))]

    def _view(
        self, *, live: bool, inactive: bool, persistence: bool,
    ) -> tuple[str, int, float, tuple[LiveDomain, ...], frozenset[str], tuple[Definition, ...]]:
        """The live domains (with which of them are persistent, if asked) and the
        inactive definitions, each read from one generation when the host keeps still
        long enough (it nearly always does: the reads are retried while an event comes
        in between); otherwise the last reads, each domain once (live wins), stamped
        with the newest generation read."""
        doms: tuple[LiveDomain, ...] = ()
        defs: tuple[Definition, ...] = ()
        persistent: set[str] = set()
        now = 0.0
        for _ in range(_CONSISTENT_TRIES):
            stamps: set[tuple[str, int]] = set()
            persistent.clear()
            if live:
                boot, gen, now, doms = self.host.live_view()
                stamps.add((boot, gen))
                for d in doms if persistence else ():
                    boot, gen, definition = self.host.find(uuid=d.uuid)
                    stamps.add((boot, gen))
                    if definition is not None and definition.persistent:
                        persistent.add(d.uuid)
            if inactive:
                boot, gen, defs = self.host.defined()
                stamps.add((boot, gen))
            if len(stamps) == 1:
                break
        running = {d.uuid for d in doms}
        defs = tuple(d for d in defs if d.uuid not in running)
        return boot, gen, now, doms, frozenset(persistent), defs

    def _persistent(self, uuid: str) -> bool:
        """Whether the domain ``uuid`` is managed (a domain gone meanwhile is not)."""
        _, _, definition = self.host.find(uuid=uuid)
        return definition is not None and definition.persistent

    def _live_record(self, dom: LiveDomain, now: float) -> sxp.Sx:
        return _record(dom, now, persistent=self._persistent(dom.uuid))

    def _definition(self, *, name: str | None = None,
                    uuid: str | None = None) -> tuple[str, int, Definition | None]:
        """The host's ``find``; a key that cannot be a name is no domain's name."""
        try:
            return self.host.find(name=name, uuid=uuid)
        except InvalidArgumentError:
            return self.host.boot_id, self.host.generation, None

    def _by_uuid(self, uuid: str) -> tuple[str, int, float, LiveDomain | Definition | None]:
        """The domain ``uuid``, live (with its runtime figures) or defined."""
        for _ in range(_CONSISTENT_TRIES):
            boot, gen, now, dom = self.host.lookup_uuid(uuid)  # never a domain *named* so
            if dom is not None:
                return boot, gen, now, dom
            boot, gen, definition = self._definition(uuid=uuid)
            if definition is None or definition.id is None:
                return boot, gen, now, definition
            # started between the two reads: read it live again
        return boot, gen, now, None

    def _find_any(self, key: str) -> tuple[str, int, float, LiveDomain | Definition]:
        """The domain ``key`` names, live or defined: by name first (xend's order), among
        live and defined domains alike, then by ID, then by UUID; 404 when none."""
        boot, gen, now, dom = self.host.lookup(key)
        if dom is None or dom.name != key:
            boot2, gen2, definition = self._definition(name=key)
            if definition is None and dom is None:
                uuid = _as_uuid(key)
                if uuid is not None:
                    boot2, gen2, definition = self._definition(uuid=uuid)
            if definition is not None:
                if definition.id is None:
                    return boot2, gen2, now, definition
                boot, gen, now, found = self._by_uuid(definition.uuid)  # it runs now
                if found is not None:
                    return boot, gen, now, found
                dom = None
        if dom is None:
            # xend answered the lookup error's text; clients must not parse it
            raise _Answer(404, f"<Fault 3: 'invalid domain:{key}'>", kind="no-domain",
                          content_type="text/plain",
                          headers=[("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))])
        return boot, gen, now, dom

    def _find(self, key: str, op: str) -> tuple[str, int, float, LiveDomain]:
        """The live domain ``key`` names; one that is defined and shut off is refused."""
        boot, gen, now, found = self._find_any(key)
        if isinstance(found, Definition):
            raise _not_running(found, op)
        return boot, gen, now, found

    def _any_record(self, found: LiveDomain | Definition, now: float) -> sxp.Sx:
        if isinstance(found, Definition):
            return _inactive_record(found)
        return self._live_record(found, now)

    def _domain(self, req: _Request, key: str) -> tuple[int, str, list[tuple[str, str]]]:
        """One domain's record, or an op's answer about it. With ``expected_uuid`` (an
        extension) the domain is that UUID's, which ``key`` must be: no domain named
        like another's UUID answers for it."""
        expected = _one(req.query, "expected_uuid", required=False)
        if expected is None:
            boot, gen, now, found = self._find_any(key)
        else:
            uuid = parse_uuid(expected)
            if _as_uuid(key) != uuid:
                raise _err(400, f"expected_uuid {uuid} is not the domain {key!r}", "invalid")
            boot, gen, now, exact = self._by_uuid(uuid)
            if exact is None:
                raise _Answer(404, f"<Fault 3: 'invalid domain:{key}'>", kind="no-domain",
                              content_type="text/plain",
                              headers=[("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))])
            found = exact
        meta = [("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))]
        op = _one(req.query, "op", required=False)
        if op is None:
            return 200, sxp.dumps(self._any_record(found, now)), meta
        if op in ("vcpuinfo", "domain_sched_credit_get"):
            if isinstance(found, Definition):
                raise _not_running(found, op)
            if op == "vcpuinfo":
                return 200, sxp.dumps(records.vcpuinfo_record(
                    self.host.vcpu_info(found.uuid))), meta
            return 200, sxp.dumps(records.sched_credit_record(
                self.host.scheduler(found.uuid))), meta
        if op == "xvirt_settings":
            affect = _affect(_one(req.query, "affect", required=False))
            return 200, sxp.dumps(records.settings_record(
                self.host.settings(found.uuid, affect))), meta
        raise _Answer(501, f"Operation not implemented: {op}", kind="unsupported",
                      content_type="text/plain")

    @staticmethod
    def _op(req: _Request) -> str:
        ops = req.form.get("op", [])
        if len(ops) != 1:
            raise _Answer(406, "", kind="invalid")
        return ops[0]

    def _image_name(self, path: str | None) -> str:
        """xend took any path on its host; this daemon acts for other users, so it
        saves and restores in its image directory only: a plain name, or a path
        inside that directory. Anything else is refused, naming the directory, before
        a byte is written or read (the host model would take a path)."""
        if path is None:
            raise _err(400, "missing field 'file'", "invalid")
        directory = os.path.abspath(self.host.image_dir).rstrip("/") + "/"
        inside = path.startswith(directory)
        try:
            return check_image_name(path[len(directory):] if inside else path)
        except InvalidArgumentError as exc:
            where = "a path outside it" if path.startswith("/") and not inside else exc.message
            raise InvalidArgumentError(
                f"this daemon saves and restores images only in its image directory "
                f"{directory} (it acts for other users), by a plain file name or a path "
                f"in it: {path!r} is not one ({where})", name=exc.name or path) from None

    def _domain_post(self, req: _Request, key: str) -> tuple[int, str, list[tuple[str, str]]]:
        op_name = self._op(req)
        if op_name == "wait_for_devices":
            self._find(key, op_name)
            return 202, "", []
        if op_name in _MANAGED_OPS:
            return self._managed(req, key, op_name)
        if op_name in _SETTINGS_OPS:
            return self._settings(req, key, op_name)
        if op_name == "shutdown":
            reason = _one(req.form, "reason", required=False) or "poweroff"
            if reason not in _SHUTDOWN_REASONS:
                raise _err(400, f"unknown shutdown reason {reason!r}", "invalid")
            op, status = _SHUTDOWN_REASONS[reason], 202
        elif op_name in _DOMAIN_OPS:
            op, status = _DOMAIN_OPS[op_name]
        else:
            raise _Answer(501, f"Operation not implemented: {op_name}", kind="unsupported",
                          content_type="text/plain")
        expected = _one(req.form, "expected_uuid", required=False)
        if expected is not None:
            expected = parse_uuid(expected)
        domid = int(key) if key.isascii() and key.isdigit() and len(key) < 6 else -1
        self._authorize(req, op.value, domid, expected or "")
        arg: str | None = None
        if op is Op.SAVE:
            arg = self._image_name(_one(req.form, "file", required=False))
        elif op is Op.RENAME:
            arg = _one(req.form, "name")
        if expected is not None:
            # C4: the ID in the path and the UUID are checked and acted on in one step
            if domid < 0 or domid >= DOMID_FIRST_RESERVED:
                raise _err(400, f"with expected_uuid the domain must be given by ID, not "
                                f"{key!r}", "invalid")
            self.host.act(op, domid, expected, arg)
        else:
            _, _, _, dom = self._find(key, op.value)
            self.host.act(op, dom.id, dom.uuid, arg, origin="xend")
        return status, "", []

    def _by_key(self, req: _Request, key: str, op_name: str) -> str:
        """The UUID of the domain ``key`` names (xend: by name, ID or UUID), once the
        request is authorized; with ``expected_uuid`` equal to ``key`` that UUID itself,
        so no domain named like another's UUID can take the call over."""
        expected = _one(req.form, "expected_uuid", required=False)
        if expected is not None:
            expected = parse_uuid(expected)
        self._authorize(req, op_name, -1, expected or _as_uuid(key) or "")
        if expected is not None and _as_uuid(key) == expected:
            return expected  # by UUID, as the xend driver sends it: no name can shadow it
        _, _, _, found = self._find_any(key)
        if expected is not None and found.uuid != expected:
            self.host.journal_refusal(op_name, -1, expected, "identity mismatch")
            raise NoDomainError(f"{key!r} is domain {found.uuid}, not {expected}",
                                uuid=expected, name=found.name, op=op_name)
        return found.uuid

    def _settings(self, req: _Request, key: str,
                  op_name: str) -> tuple[int, str, list[tuple[str, str]]]:
        """xend's ``set_vcpus`` (``vcpus=``; extensions ``affect=`` and ``maximum=1``),
        ``domain_sched_credit_set`` (``weight=``, ``cap=``: each optional) and the
        extension ``xvirt_set_metadata`` (``type=``, ``value=``, ``key=``, ``uri=``,
        ``affect=``): by UUID, as the host acts."""
        uuid = self._by_key(req, key, op_name)
        f = req.form
        if op_name == "set_vcpus":
            count = _int(_one(f, "vcpus"), "vcpus", low=1, high=1 << 16)
            maximum = _one(f, "maximum", required=False) or "0"
            if maximum not in ("0", "1"):
                raise _err(400, f"field 'maximum' must be 0 or 1, not {maximum!r}", "invalid")
            self.host.set_vcpus(uuid, count, affect=_affect(_one(f, "affect", required=False)),
                                maximum=maximum == "1", origin="client")
            return 200, "", []
        if op_name == "domain_sched_credit_set":
            weight, cap = (_one(f, name, required=False) for name in ("weight", "cap"))
            params = self.host.set_scheduler(
                uuid, weight=None if weight is None else _int(weight, "weight", high=1 << 32),
                cap=None if cap is None else _int(cap, "cap", high=1 << 32), origin="client")
            return 200, sxp.dumps(records.sched_credit_record(params)), []
        kind = _METADATA_TYPES.get(_one(f, "type") or "")
        if kind is None:
            raise _err(400, f"field 'type' must be one of {', '.join(_METADATA_TYPES)}",
                       "invalid")
        self.host.set_metadata(uuid, kind, _one(f, "value", required=False),
                               key=_one(f, "key", required=False),
                               uri=_one(f, "uri", required=False),
                               affect=_affect(_one(f, "affect", required=False)),
                               origin="client")
        return 200, "", []

    def _node_stats(self, req: _Request, what: str) -> tuple[int, str, list[tuple[str, str]]]:
        """``GET /xvirt/node/memory[?cell=N]`` and ``/xvirt/node/cpu[?cpu=N]``: the
        node's memory (KiB) and CPU time by mode (ns), all of it without the index."""
        if req.method == "POST":
            raise _Answer(405, "", kind="invalid")
        if what == "memory":
            cell = _one(req.query, "cell", required=False)
            mem = self.host.node_memory_stats(None if cell is None else _int(cell, "cell"))
            return 200, sxp.dumps(["memory_stats", ["total", str(mem.total_kib)],
                                   ["free", str(mem.free_kib)],
                                   ["buffers", str(mem.buffers_kib)],
                                   ["cached", str(mem.cached_kib)]]), []
        cpu = _one(req.query, "cpu", required=False)
        stats = self.host.node_cpu_stats(None if cpu is None else _int(cpu, "cpu"))
        return 200, sxp.dumps(["cpu_stats", ["kernel", str(stats.kernel_ns)],
                               ["user", str(stats.user_ns)], ["idle", str(stats.idle_ns)],
                               ["iowait", str(stats.iowait_ns)]]), []

    def _stats(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        """``GET /xvirt/stats?groups=block,net[&uuid=U...]``: the data plane's domain
        statistics (no uuid: every live domain), in JSON (xvirt.wire.stats_codec),
        read at one instant of the host; a wedged domain has its groups ``missing``."""
        if req.method == "POST":
            raise _Answer(405, "", kind="invalid")
        groups = decode_groups(_one(req.query, "groups", required=False) or "")
        uuids = req.query.get("uuid")
        with _gc_paused():
            body = _stats_answer(self.host, groups, uuids)
        raise _Answer(200, body, content_type="application/json")

    def _managed(self, req: _Request, key: str,
                 op_name: str) -> tuple[int, str, list[tuple[str, str]]]:
        """``op=start``/``op=delete`` of the domain ``key`` names (xend: by name, ID or
        UUID); the host acts by UUID, so no other domain can take the call over."""
        uuid = self._by_key(req, key, op_name)
        if op_name == "start":
            self.host.start(uuid, origin="client")
        else:
            self.host.undefine(uuid, origin="client")
        return 202, "", []

    def _domain_dir_post(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        op_name = self._op(req)
        if op_name == "create":
            self._authorize(req, "create")
            config = records.parse_vm_config(sxp.parse(_one(req.form, "config") or ""))
            # exact=1 (an extension): the devices as sent, none if none, as op=new takes
            # them; xend gave a config without devices the host's usual pair
            exact = _one(req.form, "exact", required=False) == "1"
            # paused=0 (an extension): running at once; xend created domains paused
            paused = _one(req.form, "paused", required=False) != "0"
            rec = self.host.create(config.name, memory_kib=config.memory_kib,
                                   max_memory_kib=config.max_memory_kib, vcpus=config.vcpus,
                                   uuid=config.uuid, os_type=config.os_type,
                                   disks=config.disks or () if exact else config.disks,
                                   nics=config.nics or () if exact else config.nics,
                                   paused=paused,
                                   max_vcpus=config.max_vcpus, metadata=config.metadata,
                                   origin="client")
            uuid = rec.uuid
        elif op_name == "restore":
            self._authorize(req, "restore")
            image = self._image_name(_one(req.form, "file", required=False))
            uuid = self.host.restore(image, origin="client").uuid
        elif op_name == "new":
            self._authorize(req, "define")
            config = records.parse_vm_config(sxp.parse(_one(req.form, "config") or ""))
            # the devices as sent, none if none (xend's op=new): create's defaults are
            # for guests made on the spot, a definition is what its client wrote
            uuid = self.host.define(config.name, memory_kib=config.memory_kib,
                                    max_memory_kib=config.max_memory_kib, vcpus=config.vcpus,
                                    uuid=config.uuid, os_type=config.os_type,
                                    disks=config.disks or (), nics=config.nics or (),
                                    max_vcpus=config.max_vcpus, metadata=config.metadata,
                                    origin="client").uuid
        else:
            raise _Answer(501, f"Operation not implemented: {op_name}", kind="unsupported",
                          content_type="text/plain")
        boot, gen, now, found = self._by_uuid(uuid)
        if found is None:  # destroyed (or undefined) by someone else in between
            raise NoDomainError("the new domain vanished at once", uuid=uuid, op=op_name)
        return 201, sxp.dumps(self._any_record(found, now)), [
            ("Location", f"/xend/domain/{quote(found.name)}"), ("X-Xvirt-Boot", boot),
            ("X-Xvirt-Generation", str(gen))]

    # -- extensions ------------------------------------------------------------------------

    def _resolve(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        fields = req.form if req.method == "POST" else req.query
        if fields.get("all") == ["1"]:
            answer = self.host.list_all()
        elif "name" in fields:
            if "uuid" in fields or "id" in fields:
                raise _err(400, "resolve by name or by uuid/id, not both", "invalid")
            answer = self.host.resolve_names(fields["name"])
        else:
            uuids = [parse_uuid(u) for u in fields.get("uuid", [])]
            ids = [_int(i, "id", high=DOMID_FIRST_RESERVED - 1) for i in fields.get("id", [])]
            answer = self.host.resolve(uuids, ids)
        body: list[sxp.Sx] = ["resolution"]
        for d in answer.domains:
            config = _config(d)
            body.append(records.domain_record(
                domid=d.id, uuid=d.uuid, name=d.name, memory_kib=config.memory_kib,
                max_memory_kib=config.max_memory_kib, vcpus=config.vcpus,
                os_type=config.os_type, state=None, cpu_time_ns=None, disks=config.disks,
                nics=config.nics))
        return 200, sxp.dumps(body), [("X-Xvirt-Boot", answer.boot_id),
                                      ("X-Xvirt-Generation", str(answer.generation))]

    def _events(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        after = _int(_one(req.query, "after"), "after")
        wait_text = _one(req.query, "timeout", required=False) or "0"
        try:
            wait = float(wait_text)
        except ValueError:
            wait = -1.0
        if not 0 <= wait <= 3600:
            raise _err(400, f"timeout must be within 0..3600 seconds, not {wait_text!r}",
                       "invalid")
        wait = min(wait, MAX_EVENT_WAIT_S)
        # a long poll holds a worker: past the limit, answer at once rather than starve
        if wait > 0 and self._waiters.acquire(blocking=False):
            try:
                batch = self.host.events_since(after, wait)
            finally:
                self._waiters.release()
        else:
            batch = self.host.events_since(after, 0.0)
        return 200, sxp.dumps(encode_events(batch)), [("X-Xvirt-Boot", batch.boot_id),
                                      ("X-Xvirt-Generation", str(batch.latest))]

    def _table(
        self, req: _Request, domid_text: str | None
    ) -> tuple[int, str, list[tuple[str, str]]]:
        """The data plane; a wedged domain is an ``(unanswered ...)`` beside the rows."""
        rows: tuple[DataRow, ...]
        missing: tuple[Unanswered, ...] = ()
        if domid_text is None:
            snap = self.host.data_snapshot()
            rows, boot, gen = snap.rows, snap.boot_id, snap.generation
            missing, head = snap.unanswered, "table"
        else:
            domid = _int(domid_text, "domid", high=DOMID_FIRST_RESERVED - 1)
            head = "info"
            try:
                answer = self.host.data_info(domid)
                rows = (answer.row,) if answer.row else ()
                boot, gen = answer.boot_id, answer.generation
            except OperationFailedError as exc:
                if exc.op != "info" or exc.domid != domid or exc.uuid is None:
                    raise
                owner = self.host.data_owner(domid)  # the instant's stamps: info had none
                if owner.uuid != exc.uuid:
                    raise  # gone in between: the failure as it came
                rows, boot, gen = (), owner.boot_id, owner.generation
                missing = (Unanswered(domid, exc.uuid, exc),)
        body = encode_table(head, boot, gen, rows, missing)
        return 200, sxp.dumps(body), [("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))]

    def _fast(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        body: list[sxp.Sx] = ["fast", ["instance", self.settings.instance]]
        if self.settings.fast_socket:
            body.append(["socket", self.settings.fast_socket])
        if self.settings.table_path:
            body.append(["table", self.settings.table_path])
        return 200, sxp.dumps(body), []

    # -- the host's own administration (the outside world) ------------------------------------

    def _journal(self, req: _Request) -> tuple[int, str, list[tuple[str, str]]]:
        """One page of the journal, oldest first: entries numbered after ``after``, at
        most ``limit`` (default ``JOURNAL_PAGE``). The numbers held and the next page's
        ``after`` are in headers, so the body stays what older readers parse."""
        after = _int(_one(req.query, "after", required=False) or "0", "after")
        limit = _int(_one(req.query, "limit", required=False) or str(JOURNAL_PAGE), "limit",
                     low=1, high=JOURNAL_PAGE_MAX)
        first, last, page = self.host.journal_page(after, limit)
        start = max(after + 1, first)
        entries: list[sxp.Sx] = [
            ["entry", ["n", str(n)], ["op", j.op], ["domid", str(j.domid)], ["uuid", j.uuid],
             ["outcome", j.outcome], ["origin", j.origin]]
            for n, j in enumerate(page, start)]
        following = start + len(page) - 1 if page else max(after, first - 1)
        return 200, sxp.dumps(["journal", *entries]), [
            ("X-Xvirt-Journal-First", str(first)), ("X-Xvirt-Journal-Last", str(last)),
            ("X-Xvirt-Journal-Next", str(following))]

    def _host(self, req: _Request, what: str) -> tuple[int, str, list[tuple[str, str]]]:
        if req.method != "POST":
            if what == "domains":
                boot, gen, now, doms = self.host.live_view()
                return 200, sxp.dumps(["domains", *[_record(d, now) for d in doms]]), [
                    ("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))]
            if what == "defined":  # the truth of the defined, shut-off domains
                boot, gen, defs = self.host.defined()
                return 200, sxp.dumps(["defined", *[_inactive_record(d) for d in defs]]), [
                    ("X-Xvirt-Boot", boot), ("X-Xvirt-Generation", str(gen))]
            if what == "journal":
                return self._journal(req)
            if what == "refusals":
                counts: list[sxp.Sx] = [[kind, str(n)] for kind, n in
                                        self.settings.refusals.snapshot().items()]
                return 200, sxp.dumps(["refusals", *counts]), []
            raise _Answer(404, f"no such resource: /xvirt/host/{what}", kind="not-found",
                          content_type="text/plain")
        op = self._op(req)
        self._authorize(req, f"host:{_op_label(op, _HOST_OPS)}")
        host = self.host
        f = req.form

        def domid() -> int:
            return _int(_one(f, "domid"), "domid", high=DOMID_FIRST_RESERVED - 1)

        uuid: str | None = None
        if op == "create":
            name = _one(f, "name") or ""
            memory_kib = _int(_one(f, "memory_kib"), "memory_kib", low=1)
            vcpus = _int(_one(f, "vcpus"), "vcpus", low=1)
            count = _one(f, "count", required=False)
            if count is None:
                uuid = host.create(name, memory_kib=memory_kib, vcpus=vcpus).uuid
            else:  # NAME-0 .. NAME-(count-1), in one request and one durable write
                with host.batch():
                    for i in range(_int(count, "count", low=1, high=DOMID_FIRST_RESERVED)):
                        host.create(f"{name}-{i}", memory_kib=memory_kib, vcpus=vcpus)
        elif op in ("destroy", "shutdown", "pause", "resume", "crash", "stall", "unstall"):
            getattr(host, op)(domid())
        elif op in ("reboot", "migrate"):
            uuid = getattr(host, op)(domid()).uuid
        elif op == "save":
            host.save(domid(), self._image_name(_one(f, "image") or ""))
        elif op == "restore":
            uuid = host.restore(self._image_name(_one(f, "image") or "")).uuid
        elif op == "rename":
            host.rename(domid(), _one(f, "name") or "")
        elif op == "set_blocked":
            host.set_blocked(domid(), _one(f, "blocked", required=False) != "0")
        elif op == "reboot_host":
            host.reboot_host()
        elif op == "define":  # the host's own (origin host): xend's op=new is the client's
            uuid = host.define(_one(f, "name") or "",
                               memory_kib=_int(_one(f, "memory_kib"), "memory_kib", low=1),
                               vcpus=_int(_one(f, "vcpus"), "vcpus", low=1),
                               uuid=_one(f, "uuid", required=False)).uuid
        elif op == "start":
            uuid = host.start(parse_uuid(_one(f, "uuid"))).uuid
        elif op == "undefine":
            host.undefine(parse_uuid(_one(f, "uuid")))
        elif op == "refuse_commits" and self.settings.refuse_commits is not None:
            self.settings.refuse_commits(
                _int(_one(f, "count"), "count", low=0, high=1 << 20),
                _int(_one(f, "after", required=False) or "0", "after", high=1 << 20))
        else:
            raise _Answer(501, f"Operation not implemented: {op}", kind="unsupported",
                          content_type="text/plain")
        if uuid is None:
            return 200, "", []
        boot, gen, now, found = self._by_uuid(uuid)
        if found is None:
            raise OperationFailedError("the domain vanished at once", uuid=uuid, op=op)
        return 200, sxp.dumps(self._any_record(found, now)), []
