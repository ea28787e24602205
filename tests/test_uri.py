"""URI -> driver: sim:///NAME reaches that host; every bad URI says which URI was bad."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt import sim
from xvirt.clock import ManualClock
from xvirt.drivers.embedded import EmbeddedDriver
from xvirt.errors import HostUnreachableError, InvalidArgumentError, UnsupportedError
from xvirt.host.hypervisor import HostModel
from xvirt.uri import (
    DEFAULT_URI,
    LIBVIRT_DRIVERS,
    SCHEMES,
    default_uri,
    driver_uri,
    is_libvirt_uri,
    open_driver,
    split_cache_option,
)

_serial = itertools.count()


def _model_of(host: sim.Host | None) -> HostModel | None:
    """What an embedded driver holds: the model behind the facade ``host``."""
    return None if host is None else sim._model_of(host)


@pytest.fixture
def host(sim_host: sim.Host) -> sim.Host:
    """An empty host on ``clock``."""
    return sim_host


def test_sim_uri_reaches_the_registered_host(host: sim.Host) -> None:
    driver = open_driver(f"sim:///{host.name}")
    assert isinstance(driver, EmbeddedDriver)
    assert driver.host is _model_of(host)
    assert driver.uri == f"sim:///{host.name}"
    assert driver.readonly is False
    a = host.create("a")
    assert {r.id for r in driver.snapshot().rows} == {0, a.id}


def test_readonly_is_passed_on(host: sim.Host) -> None:
    assert open_driver(host.uri, readonly=True).readonly is True


def test_latency_parameter_is_accepted(host: sim.Host) -> None:
    driver = open_driver(f"{host.uri}?control_latency_ms=12.5")
    assert isinstance(driver, EmbeddedDriver)
    assert driver.host is _model_of(host)


def test_default_is_created_on_demand_with_demo_content(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim, "_registry", {})  # a fresh registry: no default yet
    driver = open_driver("sim:///default")
    try:
        assert isinstance(driver, EmbeddedDriver)
        assert sim.names() == ["default"]
        assert _model_of(sim.get("default")) is driver.host
        names = [d.name for d in driver.list_all().domains]
        assert names[0] == "Domain-0"
        assert {"web1", "web2", "db1", "cache1", "build1"} <= set(names)
        # a second open reaches the same host
        assert open_driver("sim:///default").host is driver.host
    finally:
        default = sim.get("default")
        if default is not None:
            default.close()  # the facade: it unregisters, then closes the model


def test_default_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_URI == "sim:///default"
    monkeypatch.delenv("XVIRT_DEFAULT_URI", raising=False)
    monkeypatch.delenv("LIBVIRT_DEFAULT_URI", raising=False)
    assert default_uri() == DEFAULT_URI
    monkeypatch.setenv("XVIRT_DEFAULT_URI", "sim:///lab")
    assert default_uri() == "sim:///lab"
    monkeypatch.setenv("XVIRT_DEFAULT_URI", "")
    assert default_uri() == DEFAULT_URI


def test_default_uri_then_libvirts(monkeypatch: pytest.MonkeyPatch) -> None:
    """$XVIRT_DEFAULT_URI, then virsh's $LIBVIRT_DEFAULT_URI, then the demo host."""
    monkeypatch.delenv("XVIRT_DEFAULT_URI", raising=False)
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    assert default_uri() == "test:///default"
    monkeypatch.setenv("XVIRT_DEFAULT_URI", "sim:///lab")
    assert default_uri() == "sim:///lab"
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "")
    monkeypatch.setenv("XVIRT_DEFAULT_URI", "")
    assert default_uri() == DEFAULT_URI


def test_unknown_host_is_unreachable() -> None:
    uri = f"sim:///no-such-host-{next(_serial)}"
    with pytest.raises(HostUnreachableError) as exc:
        open_driver(uri)
    assert exc.value.uri == uri
    assert uri in str(exc.value)


def test_closed_host_is_unreachable(make_sim_host: Callable[..., sim.Host]) -> None:
    h = make_sim_host(clock=ManualClock())
    uri = h.uri
    h.close()
    with pytest.raises(HostUnreachableError) as exc:
        open_driver(uri)
    assert exc.value.uri == uri


@pytest.mark.parametrize(
    "template",
    [
        "http://localhost/{name}",  # a scheme nobody serves
        "nope:///{name}",
        "qemu+carrier-pigeon://h/{name}",  # a libvirt driver, no libvirt transport
        "{name}",  # no scheme
        "/{name}",
        "///{name}",
        "sim://somehost/{name}",  # netloc present
        "sim://{name}",
        "sim://user@h/{name}",
        "sim:///",  # empty name
        "sim://",
        "sim:///a/{name}",  # not one name
        "sim:///{name}/",
        "sim:///{name}?latency=5",  # unknown parameter
        "sim:///{name}?control_latency_ms=5&x=1",
        "sim:///{name}?control_latency_ms=-1",
        "sim:///{name}?control_latency_ms=-0.001",
        "sim:///{name}?control_latency_ms=nan",
        "sim:///{name}?control_latency_ms=NaN",
        "sim:///{name}?control_latency_ms=fast",
        "sim:///{name}?control_latency_ms=",
        "sim:///{name}?control_latency_ms",
        "sim:///{name}?control_latency_ms=1,5",
    ],
)
def test_bad_uris_are_invalid_and_named(host: sim.Host, template: str) -> None:
    uri = template.format(name=host.name)
    with pytest.raises(InvalidArgumentError) as exc:
        open_driver(uri)
    assert exc.value.uri == uri
    assert repr(uri) in str(exc.value)


@pytest.mark.parametrize("uri", ["nope://x", "http://localhost/a", "qemu+pigeon:///system",
                                 "lxc+:///", "web1", "/run/xvirt/xend.sock"])
def test_an_unusable_uri_names_the_known_schemes(uri: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        open_driver(uri)
    message = str(err.value)
    assert "\n" not in message and repr(uri) in message
    for form in ("sim:///NAME", "xend://HOST[:PORT]", "xend+unix:///PATH", "libvirt:URI",
                 "test:///default", "qemu:///system", "xen:///system"):
        assert form in message, form


# -- plain libvirt URIs: one rule for xvirt.open, the tools and the face -------------------


@pytest.mark.parametrize(("given", "opened"), [
    ("test:///default", "libvirt:test:///default"),
    ("TEST:///default", "libvirt:TEST:///default"),
    ("qemu:///system", "libvirt:qemu:///system"),
    ("xen:///system", "libvirt:xen:///system"),
    ("qemu+ssh://root@host/system", "libvirt:qemu+ssh://root@host/system"),
    ("test+unix:///default", "libvirt:test+unix:///default"),
    ("lxc:///", "libvirt:lxc:///"),
    ("sim:///default", "sim:///default"),
    ("xend://127.0.0.1:8000", "xend://127.0.0.1:8000"),
    ("xend+unix:///run/xend.sock", "xend+unix:///run/xend.sock"),
    ("libvirt:test:///default", "libvirt:test:///default"),
    ("nope://x", "nope://x"),  # refused by open_driver, naming the known schemes
    ("qemu+pigeon:///system", "qemu+pigeon:///system"),
    ("test", "test"),
])
def test_driver_uri_sends_plain_libvirt_uris_to_the_libvirt_driver(given: str,
                                                                     opened: str) -> None:
    assert driver_uri(given) == opened
    assert is_libvirt_uri(given) == (opened != given)


@given(st.text(max_size=40))
def test_driver_uri_is_idempotent_and_only_ever_prefixes(uri: str) -> None:
    once = driver_uri(uri)
    assert driver_uri(once) == once
    assert once in (uri, "libvirt:" + uri)
    assert not is_libvirt_uri(once) or once == uri


@pytest.mark.parametrize("scheme", sorted(LIBVIRT_DRIVERS))
def test_every_libvirt_driver_name_is_a_libvirt_uri(scheme: str) -> None:
    assert set(SCHEMES).isdisjoint(LIBVIRT_DRIVERS)
    assert driver_uri(f"{scheme}:///system") == f"libvirt:{scheme}:///system"
    assert driver_uri(f"{scheme}+ssh://h/system") == f"libvirt:{scheme}+ssh://h/system"


def test_a_plain_libvirt_uri_opens_the_libvirt_driver() -> None:
    import xvirt
    from xvirt.drivers.libvirt import LibvirtDriver
    from xvirt.libvirt_api.binding import real_libvirt
    from xvirt.libvirt_api.constants import VIR_CONNECT_LIST_DOMAINS_ACTIVE

    driver = open_driver("test:///default", readonly=True)
    truth = real_libvirt().open("test:///default")  # the same host, as this process has it
    try:
        assert isinstance(driver, LibvirtDriver) and driver.readonly
        running = truth.listAllDomains(VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        assert sorted(d.name for d in driver.list_all().domains) == sorted(
            d.name() for d in running)
    finally:
        driver.close()
        truth.close()
    with xvirt.open("test:///default", readonly=True) as conn:  # as virsh -c takes it
        assert conn.uri == "test:///default"
        assert conn.lookup_by_name("test").name == "test"


def test_a_libvirt_uri_without_the_binding_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from xvirt.libvirt_api import binding

    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt: ImportError
    monkeypatch.delitem(sys.modules, binding.PRIVATE_NAME, raising=False)
    for uri in ("test:///default", "libvirt:test:///default"):
        with pytest.raises(UnsupportedError, match="libvirt-python binding is not installed"):
            open_driver(uri)


@pytest.mark.parametrize("uri", ["", "   ", None, 5, b"sim:///default"])
def test_non_strings_and_blank_are_invalid(uri: object) -> None:
    with pytest.raises(InvalidArgumentError):
        open_driver(uri)  # type: ignore[arg-type]


def test_infinite_latency_is_invalid(host: sim.Host) -> None:
    with pytest.raises(InvalidArgumentError):
        open_driver(f"{host.uri}?control_latency_ms=inf")


@pytest.mark.parametrize("form", ["sim:/{name}", "sim:{name}", "sim:///{name}#frag", "sim:///{name}#"])
def test_only_the_triple_slash_form_without_fragment(host: sim.Host, form: str) -> None:
    uri = form.format(name=host.name)
    with pytest.raises(InvalidArgumentError) as err:
        open_driver(uri)
    assert err.value.uri == uri


@pytest.mark.parametrize("name", ["a#b", "a%20b", "a?b", "a/b"])
def test_host_names_every_uri_can_reach(name: str) -> None:
    with pytest.raises(InvalidArgumentError):
        sim.Host(name)


# -- xend URIs and the cache option ------------------------------------------------


def test_xend_uris_pick_transport_and_options(tmp_path: object) -> None:
    from xvirt.drivers.xend import XendDriver

    d = open_driver("xend://127.0.0.1")
    assert isinstance(d, XendDriver) and d._base_url == "http://127.0.0.1:8000"
    d.close()
    d = open_driver("xend://[::1]:9000?timeout=0.5&fast=http")
    assert isinstance(d, XendDriver) and d._base_url == "http://[::1]:9000"
    assert d._timeout == 0.5 and d._fast_mode == "http"
    d.close()
    d = open_driver("xend+unix:///run/xvirt/xend.sock", readonly=True)
    assert isinstance(d, XendDriver) and d._unix_socket == "/run/xvirt/xend.sock" and d.readonly
    d.close()


@pytest.mark.parametrize("uri", [
    "xend://", "xend://host/path", "xend://host:99999", "xend://h?bogus=1",
    "xend://h?timeout=-1", "xend://h?timeout=inf", "xend://h?fast=carrier-pigeon",
    "xend+unix://", "xend+unix://host/sock", "xend+unix:///", "xend://h?token_file=/nonexistent",
])
def test_bad_xend_uris_are_invalid_and_named(uri: str) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        open_driver(uri)
    assert err.value.uri == uri


@pytest.mark.parametrize(("given", "clean", "cache"), [
    ("sim:///default", "sim:///default", True),
    ("sim:///default?cache=off", "sim:///default", False),
    ("sim:///x?control_latency_ms=5&cache=off", "sim:///x?control_latency_ms=5", False),
    ("xend://h:1?cache=on&timeout=2", "xend://h:1?timeout=2", True),
])
def test_cache_option_is_taken_out_of_any_uri(given: str, clean: str, cache: bool) -> None:
    assert split_cache_option(given) == (clean, cache)


def test_cache_option_must_be_on_or_off() -> None:
    with pytest.raises(InvalidArgumentError, match="cache"):
        split_cache_option("sim:///default?cache=maybe")


def test_sim_guests_makes_a_host_of_that_size_once() -> None:
    import xvirt

    conn = xvirt.open("sim:///sized-host?guests=7")
    again = xvirt.open("sim:///sized-host?guests=3")  # exists: the parameter makes nothing
    try:
        assert len(conn.list_domain_ids()) == 8  # Domain-0 and seven guests
        assert again.list_domain_ids() == conn.list_domain_ids()
        assert conn.lookup_by_name("guest-00007").id > 0
    finally:
        conn.close()
        again.close()
        host = xvirt.sim.get("sized-host")
        assert host is not None
        host.close()


@pytest.mark.parametrize("value", ["x", "-1", "1.5", "30001", ""])
def test_sim_guests_must_be_a_small_whole_number(value: str) -> None:
    import xvirt

    with pytest.raises(xvirt.InvalidArgumentError, match="guests must be"):
        xvirt.open(f"sim:///never?guests={value}")


def test_sim_image_dir_goes_with_guests(tmp_path: object) -> None:
    import xvirt

    conn = xvirt.open(f"sim:///imaged?guests=1&image_dir={tmp_path}")
    try:
        assert conn.image_dir == str(tmp_path)
        with pytest.raises(xvirt.InvalidArgumentError, match="absolute"):
            xvirt.open("sim:///imaged?guests=1&image_dir=relative")
        with pytest.raises(xvirt.InvalidArgumentError, match="applies to a host made"):
            xvirt.open("sim:///default?image_dir=/tmp")
    finally:
        conn.close()
        host = xvirt.sim.get("imaged")
        assert host is not None
        host.close()
