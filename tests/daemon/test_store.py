"""The host outlives its daemon: what the store keeps is exactly the host."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xvirt.clock import ManualClock
from xvirt.daemon.store import HostStore
from xvirt.errors import InvalidArgumentError, XvirtError
from xvirt.host.hypervisor import DOM0_UUID, HostModel
from xvirt.model import (
    Affect,
    DomainMetadata,
    DomainSettings,
    DomainState,
    MetadataElement,
    MetadataKind,
    SchedulerParams,
)
from xvirt.planes import DiskConfig, DomainConfig, NicConfig

OPS = ["create", "destroy", "pause", "resume", "reboot", "migrate", "save", "restore",
       "rename", "crash", "reboot_host", "set_blocked", "define", "start", "undefine",
       "set_vcpus", "set_scheduler", "set_metadata"]
AFFECTS = (Affect.CURRENT, Affect.LIVE, Affect.CONFIG, Affect.LIVE | Affect.CONFIG)


def _host(tmp: Path, clock: ManualClock) -> HostModel:
    return HostModel("kept", clock=clock, image_dir=tmp / "images", id_policy="random",
                     max_domid=6, seed=1)


def _apply(host: HostModel, op: str, pick: int, serial: int) -> None:
    guests = [d for d in host.domains() if d.id != 0]
    known = sorted({g.uuid for g in guests} | {s.uuid for s in host.state().definitions})
    try:
        if op == "define":  # a new domain, or (odd picks) another definition of a known one
            uuid = known[pick % len(known)] if known and pick % 2 else None
            current = host.find(uuid=uuid)[2] if uuid else None
            name = current.name if current and current.id is not None else f"d{serial}"
            host.define(name, uuid=uuid, memory_kib=1024 * (1 + pick % 4), vcpus=1 + pick % 3,
                        nics=[NicConfig(f"02:00:00:00:01:{pick:02x}")] if pick % 3 else None)
        elif op in ("start", "undefine"):
            if known:
                getattr(host, op)(known[pick % len(known)])
        elif op in ("set_vcpus", "set_scheduler", "set_metadata"):
            if known:  # the settings of a running domain or of a definition (issue 18)
                uuid, affect = known[pick % len(known)], AFFECTS[pick % 4]
                if op == "set_vcpus":
                    host.set_vcpus(uuid, 1 + pick % 5, affect=affect, maximum=pick % 7 == 0)
                elif op == "set_scheduler":
                    host.set_scheduler(uuid, weight=1 + pick * 100, cap=pick % 3 * 50)
                else:
                    kind = list(MetadataKind)[pick % 3]
                    value = f"<v{serial}/>" if pick % 5 else None
                    host.set_metadata(uuid, kind, value, affect=affect,
                                      key="k" if kind is MetadataKind.ELEMENT and value else None,
                                      uri=f"http://x/{pick % 2}"
                                      if kind is MetadataKind.ELEMENT else None)
        elif op == "create":
            disks: list[DiskConfig] | None = None  # odd picks: the defaults
            nics: list[NicConfig] | None = None
            if pick % 2 == 0:
                disks = [DiskConfig(f"phy:/dev/vg/g{serial}", "xvdb", readonly=pick % 4 == 0)]
                nics = [NicConfig(f"02:00:00:00:00:{pick:02x}", None if pick % 3 else "br1")]
            host.create(f"g{serial}", memory_kib=1024 * (1 + pick % 4), vcpus=1 + pick % 3,
                        disks=disks, nics=nics)
        elif op == "restore":
            images = host.images()
            if images:
                host.restore(images[pick % len(images)])
        elif op == "reboot_host":
            host.reboot_host()
        elif guests:
            dom = guests[pick % len(guests)]
            if op == "save":
                host.save(dom.id, f"img{serial}")
            elif op == "rename":
                host.rename(dom.id, f"r{serial}")
            elif op == "set_blocked":
                host.set_blocked(dom.id, pick % 2 == 0)
            else:
                getattr(host, op)(dom.id)
    except XvirtError:
        pass  # refusals (wrong state, no free ID) are part of the history


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50)), max_size=40))
def test_a_reloaded_host_is_the_same_host(tmp_path_factory: pytest.TempPathFactory,
                                          history: list[tuple[str, int]]) -> None:
    tmp = tmp_path_factory.mktemp("state")
    clock = ManualClock(1000.0)
    host = _host(tmp, clock)
    store = HostStore(tmp)
    store.save(host.state())
    host.add_observer(store)
    for serial, (op, pick) in enumerate(history):
        clock.advance(1.5)
        _apply(host, op, pick, serial)

    again = _host(tmp, clock)
    saved = HostStore(tmp).load()
    assert saved is not None
    again.load(saved)
    assert again.boot_id == host.boot_id
    assert again.generation == host.generation
    assert again.domains() == host.domains()  # IDs, names, states, CPU time
    assert _configs(again) == _configs(host)  # memory, devices
    assert again.defined() == host.defined()  # the shut-off managed domains
    assert again.state().definitions == host.state().definitions  # and the running ones'
    for dom in host.state().domains:  # vCPUs, scheduler and metadata (issue 18)
        assert again.settings(dom.uuid, Affect.LIVE) == host.settings(dom.uuid, Affect.LIVE)
        assert again.scheduler(dom.uuid) == host.scheduler(dom.uuid)
        assert again.vcpu_info(dom.uuid) == host.vcpu_info(dom.uuid)
    # each vCPU's time, the offline ones' too, as it was last folded
    assert sorted((d.uuid, d.cpu_ns, d.since, d.vcpu_ns) for d in again.state().domains) == (
        sorted((d.uuid, d.cpu_ns, d.since, d.vcpu_ns) for d in host.state().domains))
    assert again.node_cpu_stats() == host.node_cpu_stats()  # the boot's start is kept
    assert again.journal() == host.journal()
    events = host.events_since(max(0, host.generation - 10))
    assert again.events_since(max(0, host.generation - 10)) == events
    # and it goes on: events number on from where they were
    if len(host.domains()) <= host.max_domid:
        host.create("after", memory_kib=1024)
        again.create("after", memory_kib=1024)
        assert again.generation == host.generation
    store.close()


def _configs(host: HostModel) -> list[DomainConfig | None]:
    return [d.config for d in host.list_all().domains]


def test_nothing_saved_loads_as_none(tmp_path: Path) -> None:
    assert HostStore(tmp_path).load() is None


def test_a_damaged_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "host.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(InvalidArgumentError, match=r"host\.sqlite"):
        HostStore(tmp_path).load()


def test_inconsistent_saved_state_is_refused(tmp_path: Path) -> None:
    clock = ManualClock()
    host = _host(tmp_path, clock)
    host.create("a")
    store = HostStore(tmp_path)
    store.save(host.state())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    db.execute("UPDATE domains SET id = 0 WHERE name = 'a'")
    db.commit()
    db.close()
    state = store.load()
    assert state is not None
    with pytest.raises(InvalidArgumentError, match="inconsistent"):
        _host(tmp_path, clock).load(state)


def test_every_change_is_committed_before_the_request_returns(tmp_path: Path) -> None:
    clock = ManualClock()
    host = _host(tmp_path, clock)
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    rec = host.create("a")
    host.pause(rec.id)
    # a second reader of the file sees it at once: nothing waits for a later flush
    state = HostStore(tmp_path).load()
    assert state is not None
    assert [(d.name, d.state.value) for d in state.domains] == [("Domain-0", "running"),
                                                                ("a", "paused")]
    assert state.generation == host.generation == 2
    assert [j.op for j in state.journal] == ["create", "pause"]


def test_the_id_rover_goes_on_where_it_was(tmp_path: Path) -> None:
    clock = ManualClock()
    host = HostModel("kept", clock=clock, image_dir=tmp_path / "images")
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    for name in "abc":
        host.create(name)
    host.destroy(3)
    again = HostModel("kept", clock=clock, image_dir=tmp_path / "images")
    saved = HostStore(tmp_path).load()
    assert saved is not None
    again.load(saved)
    assert again.create("d").id == host.create("d").id == 4  # not 3: no early reuse


U = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def _version_1_file(directory: Path) -> None:
    """A state file as the daemon wrote it before domains had devices (schema 1)."""
    db = sqlite3.connect(directory / "host.sqlite")
    db.executescript("""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE domains (
        uuid TEXT PRIMARY KEY, id INTEGER NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
        memory_kib INTEGER NOT NULL, max_memory_kib INTEGER NOT NULL, vcpus INTEGER NOT NULL,
        os_type TEXT NOT NULL, load REAL NOT NULL, cpu_ns INTEGER NOT NULL, since REAL NOT NULL
    );
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, id INTEGER NOT NULL, uuid TEXT NOT NULL,
        old_id INTEGER, name TEXT
    );
    CREATE TABLE journal (
        n INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, domid INTEGER NOT NULL,
        uuid TEXT NOT NULL, outcome TEXT NOT NULL, origin TEXT NOT NULL
    );
    """)
    db.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema", "1"), ("boot_id", "b0000000-0000-4000-8000-000000000001"),
        ("generation", "1"), ("rover", "1"), ("daemon_epoch", "0")])
    db.executemany("INSERT INTO domains VALUES (?,?,?,?,?,?,?,?,?,?,?)", [
        (DOM0_UUID, 0, "Domain-0", "running", 2097152, 2097152, 4, "linux", 0.05, 0, 1000.0),
        (U, 1, "web", "paused", 524288, 524288, 2, "linux", 0.25, 7, 1000.0)])
    db.execute("INSERT INTO events VALUES (1, 'created', 1, ?, NULL, NULL)", (U,))
    db.execute("INSERT INTO journal (op, domid, uuid, outcome, origin) VALUES "
               "('create', 1, ?, 'ok', 'host')", (U,))
    db.commit()
    db.close()


def test_a_state_file_from_before_devices_loads_with_the_default_devices(
        tmp_path: Path) -> None:
    _version_1_file(tmp_path)
    clock = ManualClock(1000.0)
    store = HostStore(tmp_path)
    saved = store.load()
    assert saved is not None
    host = HostModel("kept", clock=clock, image_dir=tmp_path / "images")
    host.load(saved)
    assert [(d.id, d.name, d.state) for d in host.domains()] == [
        (0, "Domain-0", DomainState.RUNNING), (1, "web", DomainState.PAUSED)]
    dom0, web = _configs(host)
    assert dom0 is not None and (dom0.disks, dom0.nics) == ((), ())
    assert web is not None
    assert web.disks == (DiskConfig("/var/lib/xen/images/web.img", "xvda"),)
    assert web.nics == (NicConfig("00:16:3e:66:95:eb", "xenbr0"),)
    # the file now takes devices: a change is written and read back in full
    host.add_observer(store)
    host.create("db", disks=[DiskConfig("phy:/dev/vg/db", "xvda")], nics=())
    host.rename(1, "web2")
    again = HostModel("kept", clock=clock, image_dir=tmp_path / "images")
    reloaded = HostStore(tmp_path).load()
    assert reloaded is not None
    again.load(reloaded)
    assert _configs(again) == _configs(host)
    assert again.domains() == host.domains()
    db = sqlite3.connect(tmp_path / "host.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
    db.close()


def test_a_state_file_of_an_unknown_schema_is_refused(tmp_path: Path) -> None:
    _version_1_file(tmp_path)
    db = sqlite3.connect(tmp_path / "host.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(InvalidArgumentError, match="schema 99"):
        HostStore(tmp_path)
    columns = [r[1] for r in sqlite3.connect(tmp_path / "host.sqlite").execute(
        "PRAGMA table_info(domains)")]
    assert "disks" not in columns  # a file it cannot read is not touched


@pytest.mark.parametrize("table", ["domains", "definitions"])
@pytest.mark.parametrize("column", ["disks", "nics"])
@pytest.mark.parametrize("junk", ["not json", "5", '[{"x": 1}]', '["a"]'])
def test_damaged_devices_are_named(tmp_path: Path, table: str, column: str, junk: str) -> None:
    """A running domain's devices, or a definition's."""
    host = _host(tmp_path, ManualClock())
    (host.create if table == "domains" else host.define)("a")
    store = HostStore(tmp_path)
    store.save(host.state())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    db.execute(f"UPDATE {table} SET {column} = ? WHERE name = 'a'", (junk,))
    db.commit()
    db.close()
    with pytest.raises(InvalidArgumentError, match="damaged"):
        store.load()


# -- managed domains' definitions ----------------------------------------------------------

U2 = "4f77abd2-3019-58e8-3bab-6fbf2118f880"


def _reloaded(tmp_path: Path, clock: ManualClock) -> HostModel:
    saved = HostStore(tmp_path).load()
    assert saved is not None
    again = _host(tmp_path, clock)
    again.load(saved)
    return again


def _version_2_file(directory: Path) -> None:
    """A state file as the daemon wrote it before domains could be defined (schema 2:
    devices, no definitions table)."""
    _version_1_file(directory)
    db = sqlite3.connect(directory / "host.sqlite")
    db.execute("ALTER TABLE domains ADD COLUMN disks TEXT")
    db.execute("ALTER TABLE domains ADD COLUMN nics TEXT")
    db.execute("UPDATE domains SET disks = '[]', nics = '[]' WHERE uuid = ?", (DOM0_UUID,))
    db.execute("UPDATE domains SET disks = ?, nics = '[]' WHERE uuid = ?",
               ('[{"source": "phy:/dev/vg/web", "target": "xvda", "readonly": false}]', U))
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema'")
    db.commit()
    db.close()


def test_a_state_file_from_before_definitions_loads_with_none(tmp_path: Path) -> None:
    _version_2_file(tmp_path)
    clock = ManualClock(1000.0)
    store = HostStore(tmp_path)
    saved = store.load()
    assert saved is not None and saved.definitions == ()
    host = _host(tmp_path, clock)
    host.load(saved)
    assert [(d.id, d.name) for d in host.domains()] == [(0, "Domain-0"), (1, "web")]
    assert host.defined()[2] == ()
    web = host.list_all().domains[1].config
    assert web is not None and web.disks == (DiskConfig("phy:/dev/vg/web", "xvda"),)
    # the file now keeps definitions: they are written and read back
    host.add_observer(store)
    host.define("mail", uuid=U2, memory_kib=2048)
    host.define("web", uuid=U)  # the running domain becomes persistent
    again = _reloaded(tmp_path, clock)
    assert again.defined() == host.defined() and [d.name for d in again.defined()[2]] == [
        "mail"]
    assert again.find(uuid=U) == host.find(uuid=U)
    found = again.find(uuid=U)[2]
    assert found is not None and found.persistent
    db = sqlite3.connect(tmp_path / "host.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
    db.close()
    store.close()


def test_definitions_change_and_go_in_the_store_as_in_the_host(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    host = _host(tmp_path, clock)
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    host.define("mail", uuid=U, vcpus=2)
    host.define("post", uuid=U2)
    rec = host.start(U)
    host.rename(rec.id, "mail2")
    with host.batch():  # one commit that hands a name from one definition to another
        host.define("spare", uuid=U2)
        host.rename(rec.id, "post")
    host.reboot_host()  # the running one is shut off, both definitions stay
    assert [d.name for d in _reloaded(tmp_path, clock).defined()[2]] == ["post", "spare"]
    host.define("post", uuid=U, memory_kib=4096)  # replaced while shut off
    host.undefine(U2)
    again = _reloaded(tmp_path, clock)
    assert again.defined() == host.defined()
    (post,) = again.defined()[2]
    assert post.config is not None and (post.uuid, post.config.memory_kib) == (U, 4096)
    assert again.start(U).name == "post"
    store.close()


def test_a_new_full_save_replaces_the_definitions(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    host = _host(tmp_path, clock)
    host.define("old", uuid=U)
    store = HostStore(tmp_path)
    store.save(host.state())
    fresh = _host(tmp_path, clock)
    fresh.define("new", uuid=U2)
    store.save(fresh.state())
    assert [d.name for d in _reloaded(tmp_path, clock).defined()[2]] == ["new"]
    store.close()


def test_a_definition_that_takes_a_running_domains_name_is_refused(tmp_path: Path) -> None:
    clock = ManualClock()
    host = _host(tmp_path, clock)
    host.create("a")
    host.define("b")
    store = HostStore(tmp_path)
    store.save(host.state())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    db.execute("UPDATE definitions SET name = 'a'")
    db.commit()
    db.close()
    state = store.load()
    assert state is not None
    with pytest.raises(InvalidArgumentError, match="inconsistent"):
        _host(tmp_path, clock).load(state)


# -- vCPUs, the scheduler and metadata (schema 4, issue 18) ------------------------------------


def test_settings_are_kept_for_running_domains_and_definitions(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    host = _host(tmp_path, clock)
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    meta = DomainMetadata("T", "D\nx", (MetadataElement("http://a/", "a", "<a q=\"1\"/>"),))
    rec = host.create("g", vcpus=1, max_vcpus=4, metadata=meta)
    host.set_vcpus(rec.uuid, 3)
    host.set_scheduler(rec.uuid, weight=1000, cap=150)
    d = host.define("m", vcpus=2, max_vcpus=8, metadata=meta)
    host.set_metadata(d.uuid, MetadataKind.TITLE, None)
    clock.advance(60)
    again = _reloaded(tmp_path, clock)
    assert again.settings(rec.uuid) == DomainSettings(3, 4, meta)
    assert again.scheduler(rec.uuid) == SchedulerParams(1000, 150)
    assert again.settings(d.uuid) == DomainSettings(2, 8, meta.replaced(MetadataKind.TITLE,
                                                                         None))
    assert again.node_cpu_stats() == host.node_cpu_stats()
    assert again.events_since(0) == host.events_since(0)  # the metadata event too
    store.close()


def _version_3_file(directory: Path) -> None:
    """A state file as the daemon wrote it before the settings were kept (schema 3)."""
    _version_2_file(directory)
    db = sqlite3.connect(directory / "host.sqlite")
    db.executescript("""
    CREATE TABLE definitions (
        uuid TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, memory_kib INTEGER NOT NULL,
        max_memory_kib INTEGER NOT NULL, vcpus INTEGER NOT NULL, os_type TEXT NOT NULL,
        load REAL NOT NULL, disks TEXT NOT NULL, nics TEXT NOT NULL
    );""")
    db.execute("INSERT INTO definitions VALUES (?, 'mail', 2048, 2048, 2, 'linux', 0.25, "
               "'[]', '[]')", (U2,))
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.commit()
    db.close()


def test_a_state_file_from_before_settings_loads_with_the_defaults(tmp_path: Path) -> None:
    _version_3_file(tmp_path)
    clock = ManualClock(1000.0)
    store = HostStore(tmp_path)
    saved = store.load()
    assert saved is not None and saved.booted_at is None
    host = _host(tmp_path, clock)
    host.load(saved)
    assert host.settings(U) == DomainSettings(2, 2, DomainMetadata())  # max: as many as online
    assert host.scheduler(U) == SchedulerParams()
    assert host.settings(U2) == DomainSettings(2, 2, DomainMetadata())
    host.add_observer(store)
    host.set_vcpus(U2, 4, affect=Affect.CONFIG, maximum=True)
    assert _reloaded(tmp_path, clock).settings(U2) == DomainSettings(2, 4, DomainMetadata())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
    db.close()
    store.close()


@pytest.mark.parametrize("table", ["domains", "definitions"])
@pytest.mark.parametrize(("column", "junk"), [
    ("metadata", "not json"), ("metadata", '{"elements": 5}'),
    ("metadata", '{"title": "a\\nb"}'), ("max_vcpus", "1"), ("max_vcpus", "'x'"),
    ("sched_weight", "0"), ("sched_cap", "1000")])
def test_damaged_settings_are_named(tmp_path: Path, table: str, column: str,
                                    junk: str) -> None:
    host = _host(tmp_path, ManualClock())
    (host.create if table == "domains" else host.define)("a", vcpus=2, max_vcpus=4)
    store = HostStore(tmp_path)
    store.save(host.state())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    db.execute(f"UPDATE {table} SET {column} = {junk if column != 'metadata' else '?'} "
               "WHERE name = 'a'", (junk,) if column == "metadata" else ())
    db.commit()
    db.close()
    with pytest.raises(InvalidArgumentError, match="damaged"):
        store.load()


# -- per-vCPU CPU time (schema 5) -----------------------------------------------------------


def test_each_vcpus_time_is_kept_the_offline_ones_too(tmp_path: Path) -> None:
    clock = ManualClock(1000.0)
    host = _host(tmp_path, clock)
    store = HostStore(tmp_path)
    store.save(host.state())
    host.add_observer(store)
    rec = host.create("g", vcpus=1, max_vcpus=3, load=1.0)
    clock.advance(2)
    host.set_vcpus(rec.uuid, 3)
    clock.advance(1)
    host.set_vcpus(rec.uuid, 2)  # vCPU 2 offline with its second
    clock.advance(1)
    again = _reloaded(tmp_path, clock)
    assert again.vcpu_info(rec.uuid) == host.vcpu_info(rec.uuid)
    for h in (host, again):
        h.set_vcpus(rec.uuid, 3)
    assert [v.cpu_time_ns for v in again.vcpu_info(rec.uuid)] == [
        4_000_000_000, 2_000_000_000, 1_000_000_000]
    assert again.vcpu_info(rec.uuid) == host.vcpu_info(rec.uuid)
    store.close()


def _version_4_file(directory: Path) -> None:
    """A state file as the daemon wrote it before per-vCPU times were kept (schema 4):
    ``web`` has 7 ns of CPU time, 2 vCPUs online of 3."""
    _version_3_file(directory)
    db = sqlite3.connect(directory / "host.sqlite")
    for table in ("domains", "definitions"):
        for column, kind in (("max_vcpus", "INTEGER"), ("sched_weight", "INTEGER"),
                             ("sched_cap", "INTEGER"), ("metadata", "TEXT")):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    db.execute("UPDATE domains SET max_vcpus = 3 WHERE uuid = ?", (U,))
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    db.commit()
    db.close()


def test_a_state_file_from_before_per_vcpu_times_loads_with_the_even_split(
        tmp_path: Path) -> None:
    _version_4_file(tmp_path)
    clock = ManualClock(1000.0)
    store = HostStore(tmp_path)
    saved = store.load()
    assert saved is not None
    assert [(d.name, d.cpu_ns, d.vcpu_ns) for d in saved.domains] == [
        ("Domain-0", 0, (0, 0, 0, 0)), ("web", 7, (4, 3, 0))]
    host = _host(tmp_path, clock)
    host.load(saved)
    assert [v.cpu_time_ns for v in host.vcpu_info(U)] == [4, 3]
    # the file now keeps them: a change is written and read back in full
    host.add_observer(store)
    host.resume(1)
    clock.advance(1)
    host.set_vcpus(U, 3)
    clock.advance(1)
    host.set_vcpus(U, 1)
    again = _reloaded(tmp_path, clock)
    assert again.vcpu_info(U) == host.vcpu_info(U)
    again.set_vcpus(U, 3)
    # web keeps each vCPU busy a quarter of the time: 1 s on 2 vCPUs, then 1 s on 3
    assert [v.cpu_time_ns for v in again.vcpu_info(U)] == [
        4 + 2 * 250_000_000, 3 + 2 * 250_000_000, 250_000_000]
    db = sqlite3.connect(tmp_path / "host.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("5",)
    db.close()
    store.close()


@pytest.mark.parametrize("junk", ["not json", "5", '{"a": 1}', "[0, 0, 0]", "[0, 0, 0, 0, 0]",
                                  "[1, 0, 0, 0]", "[-1, 1, 0, 0]", '["0", 0, 0, 0]',
                                  "[0.0, 0, 0, 0]", "[true, false, false, false]"])
def test_damaged_vcpu_times_are_named(tmp_path: Path, junk: str) -> None:
    host = _host(tmp_path, ManualClock())
    host.create("a", vcpus=2, max_vcpus=4)
    store = HostStore(tmp_path)
    store.save(host.state())
    db = sqlite3.connect(tmp_path / "host.sqlite")
    assert db.execute("SELECT vcpu_ns FROM domains WHERE name = 'a'").fetchone() == (
        "[0, 0, 0, 0]",)
    db.execute("UPDATE domains SET vcpu_ns = ? WHERE name = 'a'", (junk,))
    db.commit()
    db.close()
    with pytest.raises(InvalidArgumentError, match="damaged"):
        store.load()
