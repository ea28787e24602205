"""xend record shapes: the facts of every capture, libvirt's reading rules, and the
daemon-writes/driver-reads round trip."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.realdata import REALDATA
from xvirt.errors import InvalidArgumentError, ProtocolError
from xvirt.model import DOMID_FIRST_RESERVED, DomainState, SchedulerParams
from xvirt.planes import DiskConfig, DomainConfig, NicConfig
from xvirt.wire.records import (
    ParsedDomain,
    VmConfig,
    device_entries,
    domain_record,
    error_sexpr,
    node_record,
    parse_devices,
    parse_domain_record,
    parse_error,
    parse_node_record,
    parse_state_flags,
    parse_vm_config,
    state_flags,
    vm_config,
)
from xvirt.wire.sxp import Sx, dumps, join_continuations, parse

PV = "596a5d21-71f4-8fb2-e068-e2386a5c413e"
FV = "b5d70dd2-75cd-aca5-1776-9660b059d8bc"
_PVTEST = (6, "pvtest", PV, 420, 420, 2, "linux", None, None)
_FVTEST = (3, "fvtest", FV, 400, 400, 1, "hvm", None, None)
B, R = DomainState.BLOCKED, DomainState.RUNNING

# From realdata/README.md's table (checked against the files): domid, name, uuid,
# memory MiB, maxmem MiB, vcpus, os type, state, cpu_time ns.
FACTS: dict[str, tuple[int, str, str, int, int, int, str, DomainState | None, int | None]] = {
    "sexpr2xml-boot-grub.sexpr": _PVTEST,
    "sexpr2xml-curmem.sexpr": (5, "rhel5", "4f77abd2-3019-58e8-3bab-6fbf2118f880", 175, 385, 1,
                               "linux", B, 137_189_121_425),
    "sexpr2xml-disk-block.sexpr": _PVTEST,
    "sexpr2xml-disk-drv-blktap-qcow.sexpr": _PVTEST,
    "sexpr2xml-fv-autoport.sexpr": (21, "domu-224", "e0c172e6-4ad8-7353-0ece-515d2f181365",
                                    512, 512, 1, "hvm", R, 907_159_661_051),
    "sexpr2xml-fv-empty-kernel.sexpr": _FVTEST,
    # fvtest here carries pvtest's UUID, unlike every other fvtest file.
    "sexpr2xml-fv-kernel.sexpr": (15, "fvtest", PV, 420, 420, 2, "hvm", None, None),
    "sexpr2xml-fv-localtime.sexpr": _FVTEST,
    "sexpr2xml-fv-net-netfront.sexpr": _FVTEST,
    "sexpr2xml-fv-serial-tcp-telnet.sexpr": (1, *_FVTEST[1:]),
    "sexpr2xml-fv-sound-all.sexpr": _FVTEST,
    "sexpr2xml-fv-usbtablet.sexpr": _FVTEST,
    "sexpr2xml-fv-utc.sexpr": _FVTEST,
    "sexpr2xml-fv-v2.sexpr": _FVTEST,
    "sexpr2xml-fv.sexpr": _FVTEST,
    "sexpr2xml-net-bridged.sexpr": _PVTEST,
    "sexpr2xml-no-source-cdrom.sexpr": (6, "test", "cc2315e7-d26a-307a-438c-6d188ec4c09c",
                                        350, 382, 1, "hvm", None, 956_663_338),
    "sexpr2xml-pci-devs.sexpr": _PVTEST,
    "sexpr2xml-pv-bootloader-cmdline.sexpr": _PVTEST,
    "sexpr2xml-pv-bootloader.sexpr": _PVTEST,  # no image at all: PV
    "sexpr2xml-pv-localtime.sexpr": _PVTEST,
    # (vcpus 4)(vcpu_avail 3): two of four online, as libvirt counted the bitmap's bits
    "sexpr2xml-pv-vcpus.sexpr": (6, "pvtest", PV, 420, 420, 2, "linux", None, None),
    "sexpr2xml-pv-vfb-orig.sexpr": _PVTEST,
    "sexpr2xml-pv-vfb-type-crash.sexpr": (1, "test2vm", "a36f6e38-f498-b06c-5fad-b04947392dbe",
                                          512, 512, 1, "linux", B, 21_397_345_341),
    "sexpr2xml-pv.sexpr": _PVTEST,
    "sexpr2xml-vif-rate.sexpr": _FVTEST,
}

# The disks and vifs of every capture, read from the files by hand: vbd and tap
# entries are disks, uname is kept as given, dev loses ioemu: and :disk/:cdrom,
# mode r is read-only; vfb, vkbd, console and pci entries are not disks or vifs.
_LVM = DiskConfig("phy:/dev/MainVG/GuestVG", "xvda")
_SOME = DiskConfig("file:/root/some.img", "xvda")
_FOO = DiskConfig("file:/root/foo.img", "hda")
_ISO = DiskConfig("file:/root/boot.iso", "hdc", readonly=True)
_FV_NIC = NicConfig("00:16:3e:1b:b1:47", "xenbr0")
_FV_DEVICES = ((_FOO,), (_FV_NIC,))
DEVICES: dict[str, tuple[tuple[DiskConfig, ...], tuple[NicConfig, ...]]] = {
    "sexpr2xml-boot-grub.sexpr": ((_LVM,), ()),
    "sexpr2xml-curmem.sexpr": ((DiskConfig("tap:aio:/xen/rhel5.img", "xvda"),),
                               (NicConfig("00:16:3e:1d:06:15", "xenbr0"),)),
    "sexpr2xml-disk-block.sexpr": ((_LVM,), ()),
    "sexpr2xml-disk-drv-blktap-qcow.sexpr": ((DiskConfig("tap:qcow:/root/some.img", "xvda"),),
                                             ()),
    "sexpr2xml-fv-autoport.sexpr": (
        (DiskConfig("phy:/iscsi/winxp", "hda"),
         DiskConfig("file:/net/heaped/export/netimage/windows/xp-sp2-vol.iso", "hdc",
                    readonly=True)),
        (NicConfig("00:16:3e:1b:e8:18", "e1000g0"),)),
    "sexpr2xml-fv-empty-kernel.sexpr": ((_FOO, _ISO), (_FV_NIC,)),
    "sexpr2xml-fv-kernel.sexpr": ((_SOME,), ()),  # dev 'ioemu:xvda'
    "sexpr2xml-fv-localtime.sexpr": _FV_DEVICES,
    "sexpr2xml-fv-net-netfront.sexpr": _FV_DEVICES,
    "sexpr2xml-fv-serial-tcp-telnet.sexpr": _FV_DEVICES,
    "sexpr2xml-fv-sound-all.sexpr": _FV_DEVICES,
    "sexpr2xml-fv-usbtablet.sexpr": _FV_DEVICES,
    "sexpr2xml-fv-utc.sexpr": _FV_DEVICES,
    "sexpr2xml-fv-v2.sexpr": ((_FOO, _ISO), (_FV_NIC,)),
    "sexpr2xml-fv.sexpr": _FV_DEVICES,
    "sexpr2xml-net-bridged.sexpr": ((_SOME,), (NicConfig("00:11:22:33:44:55", "xenbr2"),)),
    # an empty CD-ROM drive: a vbd without uname
    "sexpr2xml-no-source-cdrom.sexpr": (
        (DiskConfig("phy:/dev/sda8", "hda"), DiskConfig("", "hdc", readonly=True)),
        (NicConfig("00:16:3e:0a:7b:39", "xenbr0"),)),
    "sexpr2xml-pci-devs.sexpr": ((_LVM,), ()),
    "sexpr2xml-pv-bootloader-cmdline.sexpr": ((_SOME,), ()),
    "sexpr2xml-pv-bootloader.sexpr": ((_SOME,), ()),
    "sexpr2xml-pv-localtime.sexpr": ((_SOME,), ()),
    "sexpr2xml-pv-vcpus.sexpr": ((_SOME,), ()),
    "sexpr2xml-pv-vfb-orig.sexpr": ((_SOME,), ()),
    "sexpr2xml-pv-vfb-type-crash.sexpr": (
        (DiskConfig("phy:/dev/vg_dom0test/test2vm", "xvda"),),
        (NicConfig("00:16:36:68:9f:5d", "virbr0"),)),
    "sexpr2xml-pv.sexpr": ((_SOME,), ()),
    "sexpr2xml-vif-rate.sexpr": ((_FOO, _ISO), (_FV_NIC,)),
}


def _domain_files() -> list[object]:
    if REALDATA is None:  # pragma: no cover - the captures live beside the project
        return [pytest.param(None, marks=pytest.mark.skip(reason="realdata/xend is not present"))]
    return [pytest.param(p, id=p.name) for p in sorted((REALDATA / "xend" / "domains").iterdir())]


#: The captures with a credit scheduler share (curmem's ``(cpu_weight 1.0)`` is not one).
SCHEDULED = frozenset({"sexpr2xml-fv-autoport.sexpr", "sexpr2xml-no-source-cdrom.sexpr"})


def _expected(name: str) -> ParsedDomain:
    domid, dom, uuid, mem, maxmem, vcpus, os_type, state, cpu = FACTS[name]
    disks, nics = DEVICES[name]
    return ParsedDomain(domid, uuid, dom, mem * 1024, maxmem * 1024, vcpus, os_type, state, cpu,
                        disks, nics, sched=SchedulerParams(256, 0) if name in SCHEDULED else None,
                        max_vcpus=4 if name == "sexpr2xml-pv-vcpus.sexpr" else 0)


@pytest.mark.parametrize("path", _domain_files())
def test_every_capture_gives_the_documented_facts(path: Path) -> None:
    text = join_continuations(path.read_text())
    parsed = parse_domain_record(parse(text))
    assert parsed == _expected(path.name)
    if "-" not in text.split("(uuid", 1)[1].split(")", 1)[0]:  # 32 hex digits, quoted
        assert parsed.uuid.count("-") == 4
    assert parsed.config() == DomainConfig(
        parsed.memory_kib, parsed.max_memory_kib, parsed.vcpus, parsed.os_type, *DEVICES[path.name]
    )
    # what our daemon writes of those devices reads back as the same devices
    assert parse_devices(["domain", *device_entries(parsed.disks, parsed.nics)]) == (
        parsed.disks, parsed.nics)


def test_the_table_covers_every_capture() -> None:
    if REALDATA is None:  # pragma: no cover
        pytest.skip("realdata/xend is not present")
    assert set(FACTS) == set(DEVICES) == {
        p.name for p in (REALDATA / "xend" / "domains").iterdir()}


def test_the_unbalanced_captures_read_leniently() -> None:
    if REALDATA is None:  # pragma: no cover
        pytest.skip("realdata/xend is not present")
    nics = {  # net-routed's vif is routed, not bridged: it has no bridge
        "sexpr2xml-net-routed.sexpr": (NicConfig("00:11:22:33:44:55"),),
        "sexpr2xml-pv-vfb-new.sexpr": (),
    }
    for path in sorted((REALDATA / "xend" / "domains-unbalanced").iterdir()):
        parsed = parse_domain_record(parse(path.read_text(), lenient=True))
        assert parsed == ParsedDomain(6, PV, "pvtest", 420 * 1024, 420 * 1024, 2, "linux",
                                      None, None, (_SOME,), nics[path.name])


def test_a_capture_is_accepted_as_a_config_too() -> None:
    # libvirt's autostart sequence posts a whole (domain ...) record back with op=new.
    if REALDATA is None:  # pragma: no cover
        pytest.skip("realdata/xend is not present")
    text = (REALDATA / "xend" / "domains" / "sexpr2xml-curmem.sexpr").read_text()
    assert parse_vm_config(parse(text)) == VmConfig(
        "rhel5", "4f77abd2-3019-58e8-3bab-6fbf2118f880", 175 * 1024, 385 * 1024, 1, "linux",
        *DEVICES["sexpr2xml-curmem.sexpr"]
    )


# -- state letters --------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(DomainState))
def test_state_letters_round_trip(state: DomainState) -> None:
    assert len(state_flags(state)) == 6
    active = state is not DomainState.SHUTOFF  # only an inactive domain is shut off
    assert parse_state_flags(state_flags(state), active=active) is state


def test_no_letter_is_runnable_on_an_active_domain_and_shut_off_on_an_inactive_one() -> None:
    assert state_flags(DomainState.SHUTOFF) == "------"
    assert parse_state_flags("------") is DomainState.RUNNING
    assert parse_state_flags("------", active=False) is DomainState.SHUTOFF
    # a letter wins whatever the activity (xend's suspended managed domains: ---s--)
    assert parse_state_flags("---s--", active=False) is DomainState.SHUTDOWN


@pytest.mark.parametrize(
    ("flags", "state"),
    [
        ("r-----", DomainState.RUNNING),
        ("-b----", DomainState.BLOCKED),
        ("--p---", DomainState.PAUSED),
        ("---s--", DomainState.SHUTDOWN),
        ("----c-", DomainState.CRASHED),
        ("-----d", DomainState.DYING),
        ("-b-s--", DomainState.SHUTDOWN),  # libvirt: s (shut off) outranks b
        ("---scd", DomainState.CRASHED),
        ("---s-d", DomainState.SHUTDOWN),  # s outranks d
        ("r-p--d", DomainState.DYING),
        ("rbp---", DomainState.PAUSED),
        ("rb----", DomainState.BLOCKED),
        ("------", DomainState.RUNNING),  # runnable, waiting for a CPU
    ],
)
def test_state_letters_follow_libvirts_priority(flags: str, state: DomainState) -> None:
    assert parse_state_flags(flags) is state


def test_every_combination_of_letters_picks_the_highest_ranked() -> None:
    rank = "csdpbr"
    for bits in itertools.product((False, True), repeat=6):
        flags = "".join(c if on else "-" for c, on in zip("rbpscd", bits, strict=True))
        set_letters = [c for c in rank if c in flags]
        want = set_letters[0] if set_letters else "r"
        assert parse_state_flags(flags).letter == want, flags


@pytest.mark.parametrize(
    "flags", ["", "r----", "r------", "b-----", "R-----", "x-----", " -b---", "-b---\n", "rbpscdr"]
)
def test_malformed_state_letters_are_a_protocol_error(flags: str) -> None:
    with pytest.raises(ProtocolError, match="state"):
        parse_state_flags(flags)


# -- reading domain records -----------------------------------------------------------------

U = "6695eb01-f6a4-8304-79aa-97f2502e193f"


def _rec(*fields: str) -> Sx:
    return parse("(domain " + " ".join(fields) + ")")


BASE = (f"(uuid {U})", "(name vm)")


@pytest.mark.parametrize(
    ("memory", "kib"),
    [
        ("420", 420 * 1024),
        ("0x10", 16 * 1024),  # strtol base 0: hex
        ("0X1f", 31 * 1024),
        ("010", 8 * 1024),  # strtol base 0: a leading 0 is octal
        ("0", 0),
        ("' 42 '", 42 * 1024),  # strtol skips leading space; trailing space is allowed too
        ("+7", 7 * 1024),
    ],
)
def test_numbers_are_read_like_strtol_base_0(memory: str, kib: int) -> None:
    assert parse_domain_record(_rec(*BASE, f"(memory {memory})")).memory_kib == kib


@pytest.mark.parametrize(
    ("field", "text", "words"),
    [
        ("memory", "08", "not an integer"),  # not octal
        ("memory", "12abc", "not an integer"),
        ("memory", "0x", "not an integer"),
        ("memory", "1_000", "not an integer"),
        ("memory", "4.5", "not an integer"),
        ("maxmem", "-1", "negative"),
        ("vcpus", "9223372036854775808", "out of range"),
        ("vcpus", "1" * 100, "not an integer"),
        ("domid", "32752", "out of range"),  # 0x7FF0, Xen's first reserved ID
        ("domid", "-1", "negative"),
        ("cpu_time", "nan", "not a number"),
        ("cpu_time", "inf", "not a number"),
        ("cpu_time", "-1.0", "not a number"),
        ("cpu_time", "1e20", "out of range"),
        ("cpu_time", "1e99999999999999999999", "out of range"),
        ("state", "running", "state"),
    ],
)
def test_bad_fields_are_a_protocol_error_naming_the_field(
    field: str, text: str, words: str
) -> None:
    with pytest.raises(ProtocolError) as err:
        parse_domain_record(_rec(*BASE, f"({field} '{text}')"))
    assert field in str(err.value) and words in str(err.value)


def test_missing_numbers_read_as_zero_and_missing_runtime_fields_as_none() -> None:
    parsed = parse_domain_record(_rec(*BASE, "(memory )", "(vcpus)"))
    assert parsed == ParsedDomain(None, U, "vm", 0, 0, 0, "linux", None, None,
                                  persistent=True)  # no domid: inactive, so managed
    assert parse_domain_record(_rec(*BASE, "(domid )")).domid is None


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("137.189121425", 137_189_121_425),
        ("0.956663338", 956_663_338),
        ("1", 1_000_000_000),
        (".5", 500_000_000),
        ("1e3", 1_000_000_000_000),
        ("1.5e-10", 0),  # truncated, as libvirt's cast did
        ("0.0000000019", 1),
        ("1e-99999999999999999999", 0),
        ("18446744073.709551615", 2**64 - 1),
    ],
)
def test_cpu_time_is_float_seconds_read_exactly(text: str, ns: int) -> None:
    assert parse_domain_record(_rec(*BASE, f"(cpu_time {text})")).cpu_time_ns == ns


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (("(name vm)",), "no field 'uuid'"),
        ((f"(uuid {U})",), "no field 'name'"),
        (("(uuid '')", "(name vm)"), "no field 'uuid'"),
        (("(uuid 596a5d2171f48fb2e068e2386a5c413)", "(name vm)"), "field 'uuid'"),
        (("(uuid '{596a5d21-71f4-8fb2-e068-e2386a5c413e}')", "(name vm)"), "field 'uuid'"),
        (("(uuid (nested))", "(name vm)"), "no field 'uuid'"),
        ((f"(uuid {U})", "(name a/b)"), "field 'name'"),
        ((f"(uuid {U})", "(name ' ')"), "field 'name'"),
    ],
)
def test_a_missing_or_invalid_identity_is_a_protocol_error(
    fields: tuple[str, ...], words: str
) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_domain_record(_rec(*fields))


@pytest.mark.parametrize("uuid", ["596a5d2171f48fb2e068e2386a5c413e", PV, PV.upper()])
def test_both_uuid_forms_read_as_the_dashed_form(uuid: str) -> None:
    assert parse_domain_record(_rec(f"(uuid '{uuid}')", "(name vm)")).uuid == PV


@pytest.mark.parametrize("sx", ["domain", [], ["vm", ["name", "x"]], [["domain"]]])
def test_only_domain_records_are_domain_records(sx: Sx) -> None:
    with pytest.raises(ProtocolError, match=r"\(domain \.\.\.\)"):
        parse_domain_record(sx)


@pytest.mark.parametrize(
    ("image", "os_type"),
    [
        ("(image (hvm (kernel x)))", "hvm"),
        ("(image (linux (kernel x)))", "linux"),
        ("(image (linux) (hvm))", "hvm"),  # libvirt only asked whether hvm is there
        ("(image)", "linux"),
        ("", "linux"),
        ("(image (xen))", "xen"),  # not xend's, but what our daemon writes for such a type
    ],
)
def test_os_type(image: str, os_type: str) -> None:
    assert parse_domain_record(_rec(*BASE, image)).os_type == os_type


# -- writing domain records -----------------------------------------------------------------


def test_domain_record_has_newer_xends_shape() -> None:
    rec = domain_record(
        domid=6, uuid=U.upper(), name="vm 1", memory_kib=262144, max_memory_kib=524289,
        vcpus=2, os_type="hvm", state=DomainState.BLOCKED, cpu_time_ns=1_500_000_000,
    )
    assert rec == [
        "domain",
        ["domid", "6"],
        ["uuid", U],
        ["name", "vm 1"],
        ["memory", "256"],
        ["maxmem", "513"],  # rounded up: 524289 KiB is a little over 512 MiB
        ["memory_kib", "262144"],
        ["maxmem_kib", "524289"],
        ["vcpus", "2"],
        ["state", "-b----"],
        ["cpu_time", "1.500000000"],
        ["image", ["hvm"]],
    ]
    assert dumps(rec) == (
        f"(domain (domid 6) (uuid {U}) (name 'vm 1') (memory 256) (maxmem 513)"
        " (memory_kib 262144) (maxmem_kib 524289) (vcpus 2) (state -b----)"
        " (cpu_time 1.500000000) (image (hvm)))"
    )


def test_an_inactive_record_has_no_domid_state_or_cpu_time() -> None:
    rec = domain_record(domid=None, uuid=U, name="off", memory_kib=1024, max_memory_kib=1024,
                        vcpus=1, os_type="linux", state=None, cpu_time_ns=None)
    assert [f[0] for f in rec[1:] if isinstance(f, list)] == [
        "uuid", "name", "memory", "maxmem", "memory_kib", "maxmem_kib", "vcpus", "image"
    ]
    assert parse_domain_record(rec) == ParsedDomain(None, U, "off", 1024, 1024, 1, "linux",
                                                    None, None, persistent=True)


def test_a_managed_domains_record_as_xend_3_0_4_wrote_it() -> None:
    """Defined, not running: no domid, state ``------`` (shut off), persistent."""
    rec = domain_record(domid=None, uuid=U, name="off", memory_kib=2048, max_memory_kib=4096,
                        vcpus=2, os_type="linux", state=DomainState.SHUTOFF, cpu_time_ns=None,
                        persistent=True)
    text = dumps(rec)
    assert "domid" not in text
    assert "(state ------) (xvirt_persistent 1) (image (linux))" in text
    parsed = parse_domain_record(parse(text))
    assert (parsed.domid, parsed.state, parsed.persistent) == (None, DomainState.SHUTOFF, True)
    # real xend writes no xvirt_persistent: what has no domid is managed, else unknown
    bare = _rec(*BASE, "(state ------)")
    assert parse_domain_record(bare).persistent is True
    assert parse_domain_record(bare).state is DomainState.SHUTOFF
    running = _rec(*BASE, "(domid 3)", "(state ------)")
    assert (parse_domain_record(running).persistent, parse_domain_record(running).state) == (
        None, DomainState.RUNNING)
    assert parse_domain_record(_rec(*BASE, "(domid 3)", "(xvirt_persistent 0)")).persistent is (
        False)
    assert parse_domain_record(_rec(*BASE, "(domid 3)", "(xvirt_persistent 1)")).persistent


@pytest.mark.parametrize("text", ["", "2", "yes", "true", "01"])
def test_a_bad_persistence_field_is_a_protocol_error_naming_it(text: str) -> None:
    with pytest.raises(ProtocolError, match="xvirt_persistent"):
        parse_domain_record(_rec(*BASE, f"(xvirt_persistent '{text}')"))


def test_a_running_domain_cannot_be_written_shut_off() -> None:
    with pytest.raises(InvalidArgumentError, match="cannot be shut off") as err:
        domain_record(domid=4, uuid=U, name="on", memory_kib=1, max_memory_kib=1, vcpus=1,
                      os_type="linux", state=DomainState.SHUTOFF, cpu_time_ns=None)
    assert (err.value.domid, err.value.uuid, err.value.name) == (4, U, "on")


@pytest.mark.parametrize(("kib", "mib"), [(0, 0), (1, 1), (1023, 1), (1024, 1), (1025, 2)])
def test_memory_is_rounded_up_to_whole_mib(kib: int, mib: int) -> None:
    rec = domain_record(domid=1, uuid=U, name="x", memory_kib=kib, max_memory_kib=kib,
                        vcpus=1, os_type="linux", state=None, cpu_time_ns=None)
    assert ["memory", str(mib)] in rec and ["maxmem", str(mib)] in rec


def test_the_kib_extension_is_used_only_while_it_agrees_with_mib() -> None:
    def read(*fields: str) -> int:
        return parse_domain_record(_rec(*BASE, *fields)).memory_kib

    assert read("(memory 2)", "(memory_kib 1025)") == 1025
    assert read("(memory_kib 1025)") == 1025
    assert read("(memory 3)", "(memory_kib 1025)") == 3 * 1024  # a client edited memory
    assert read("(memory 2)") == 2 * 1024  # real xend: no extension


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory_kib": -1},
        {"vcpus": -1},
        {"max_memory_kib": 1.5},
        {"cpu_time_ns": -1},
        {"domid": DOMID_FIRST_RESERVED},
        {"domid": -1},
        {"uuid": "nope"},
    ],
)
def test_domain_record_refuses_impossible_values(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "domid": 1, "uuid": U, "name": "x", "memory_kib": 1, "max_memory_kib": 1, "vcpus": 1,
        "os_type": "linux", "state": None, "cpu_time_ns": None,
    }
    with pytest.raises(InvalidArgumentError):
        domain_record(**{**args, **kwargs})  # type: ignore[arg-type]


_NAMES = st.text(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters="/"), min_size=1,
    max_size=20,
).filter(str.strip)


_TARGETS = st.from_regex(r"(xvd|hd|sd)[a-z]{1,3}([1-9][0-9]?)?", fullmatch=True)
_MACS = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))


@settings(max_examples=300, deadline=None)
@given(
    domid=st.none() | st.integers(0, DOMID_FIRST_RESERVED - 1),
    uuid=st.uuids().map(str),
    name=_NAMES,
    memory_kib=st.integers(0, 2**42),
    extra_kib=st.integers(0, 2**42),
    vcpus=st.integers(0, 512),
    os_type=st.sampled_from(["linux", "hvm"]) | st.text(max_size=8),
    state=st.none() | st.sampled_from(DomainState),
    cpu_time_ns=st.none() | st.integers(0, 2**64 - 1),
    disks=st.lists(st.builds(DiskConfig, st.text(max_size=30), _TARGETS, st.booleans()),
                   max_size=4).map(tuple),
    nics=st.lists(st.builds(NicConfig, _MACS, st.none() | st.text(min_size=1, max_size=15)),
                  max_size=4).map(tuple),
    persistent=st.none() | st.booleans(),
)
def test_what_the_daemon_writes_the_driver_reads(
    domid: int | None, uuid: str, name: str, memory_kib: int, extra_kib: int, vcpus: int,
    os_type: str, state: DomainState | None, cpu_time_ns: int | None,
    disks: tuple[DiskConfig, ...], nics: tuple[NicConfig, ...], persistent: bool | None,
) -> None:
    def write() -> Sx:
        return domain_record(domid=domid, uuid=uuid, name=name, memory_kib=memory_kib,
                             max_memory_kib=memory_kib + extra_kib, vcpus=vcpus,
                             os_type=os_type, state=state, cpu_time_ns=cpu_time_ns,
                             disks=disks, nics=nics, persistent=persistent)

    if domid is not None and state is DomainState.SHUTOFF:
        with pytest.raises(InvalidArgumentError):  # would read back as runnable
            write()
        return
    wire = parse(dumps(write()).encode())
    told = persistent if persistent is not None else (True if domid is None else None)
    assert parse_domain_record(wire) == ParsedDomain(
        domid, uuid, name, memory_kib, memory_kib + extra_kib, vcpus, os_type, state,
        cpu_time_ns, disks, nics, told,
    )


# -- devices --------------------------------------------------------------------------------


def test_devices_are_written_as_xend_wrote_them() -> None:
    rec = domain_record(
        domid=1, uuid=U, name="x", memory_kib=1024, max_memory_kib=1024, vcpus=1,
        os_type="linux", state=None, cpu_time_ns=None,
        disks=(DiskConfig("file:/root/some.img", "xvda"),
               DiskConfig("phy:/dev/sr0", "hdc", readonly=True)),
        nics=(NicConfig("00:11:22:33:44:55", "xenbr2"), NicConfig("00:16:3e:00:00:01")),
    )
    assert dumps(rec).endswith(
        "(image (linux))"
        " (device (vbd (dev xvda) (uname file:/root/some.img) (mode w)))"
        " (device (vbd (dev hdc) (uname phy:/dev/sr0) (mode r)))"
        " (device (vif (mac 00:11:22:33:44:55) (bridge xenbr2) (script vif-bridge)))"
        " (device (vif (mac 00:16:3e:00:00:01))))"
    )


def _devices(*entries: str) -> tuple[tuple[DiskConfig, ...], tuple[NicConfig, ...]]:
    return parse_devices(_rec(*BASE, *entries))


def test_devices_are_read_tolerantly() -> None:
    assert _devices(
        "(device (vkbd (backend 0)))",
        "(device (tap2 (dev 'ioemu:xvdb:disk') (uname tap2:aio:/x.img) (mode 'w!')))",
        "(device (vbd (dev sda) (uname phy:/dev/sdb)))",  # no mode: writable, as xend
        "(device (vbd (dev hdd:cdrom) (uname file:/a.iso) (mode ro)))",
        "(device (vif (mac 00:16:3E:AA:BB:CC) (bridge) (type ioemu)))",
        "(device (pci (dev (domain 0x0) (bus 0x1))))",
    ) == (
        (DiskConfig("tap2:aio:/x.img", "xvdb"), DiskConfig("phy:/dev/sdb", "sda"),
         DiskConfig("file:/a.iso", "hdd", readonly=True)),
        (NicConfig("00:16:3e:aa:bb:cc"),),  # lower case; an empty bridge is no bridge
    )
    assert _devices() == ((), ())


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("(device)", r"device 1 is not \(device \(kind"),
        ("(device vbd)", "device 1 is not"),
        ("(device (vbd (dev xvda)) (vif (mac 00:16:3e:00:00:01)))", "device 1 is not"),
        ("(device ((vbd)))", "device 1 is not"),
        ("(device (vbd (uname file:/x)))", r"device 1 \(vbd\): no device name"),
        ("(device (tap (dev ioemu:) (uname file:/x)))", r"device 1 \(tap\): no device name"),
        ("(device (vbd (dev (xvda))))", "field 'dev' is not one value"),
        ("(device (vbd (dev xvda) (mode x)))", "field 'mode' is 'x'"),
        ("(device (vif (bridge xenbr0)))", r"device 1 \(vif\): no field 'mac'"),
        ("(device (vif (mac 00:16:3e)))", "field 'mac'"),
        ("(device (vif (mac 00:16:3e:00:00:01 extra)))", "field 'mac' is not one value"),
    ],
)
def test_malformed_devices_are_a_protocol_error_naming_the_entry(entry: str, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_domain_record(_rec(*BASE, entry))


def test_the_entry_number_counts_device_entries() -> None:
    with pytest.raises(ProtocolError, match=r"device 3 \(vif\)"):
        _devices("(device (vbd (dev xvda)))", "(device (vfb))", "(device (vif))")


# -- configs --------------------------------------------------------------------------------

LIBVIRT_CONFIG = (
    f"(vm (name 'x')(memory 420)(maxmem 512)(vcpus 2)(uuid '{U}')(on_poweroff 'destroy')"
    " (image (linux (kernel '/boot/vmlinuz')))"
    "(device (vbd (dev 'xvda')(uname 'file:/img')(mode 'w'))))"
)


def test_a_config_as_libvirt_sent_it() -> None:
    assert parse_vm_config(parse(LIBVIRT_CONFIG)) == VmConfig(
        "x", U, 420 * 1024, 512 * 1024, 2, "linux", (DiskConfig("file:/img", "xvda"),), ()
    )


def test_vm_config_shape_and_round_trip() -> None:
    cfg = vm_config("x", 420 * 1024 + 1, 512 * 1024, 2, uuid=U.upper(), os_type="hvm")
    assert dumps(cfg) == (
        f"(vm (name x) (memory 421) (maxmem 512) (vcpus 2) (uuid {U})"
        " (memory_kib 430081) (maxmem_kib 524288) (image (hvm)))"
    )
    assert parse_vm_config(parse(dumps(cfg))) == VmConfig(
        "x", U, 420 * 1024 + 1, 512 * 1024, 2, "hvm"
    )
    plain = vm_config("y", 1024, 1024, 1)
    assert parse_vm_config(plain) == VmConfig("y", None, 1024, 1024, 1, "linux")


def test_config_defaults_follow_xend() -> None:
    assert parse_vm_config(parse("(vm (name a) (memory 64))")) == VmConfig(
        "a", None, 65536, 65536, 1, "linux"
    )


def test_a_config_with_devices_gives_exactly_those() -> None:
    disks = (DiskConfig("phy:/dev/vg/a", "xvda"), DiskConfig("file:/b.iso", "hdc", True))
    nics = (NicConfig("00:16:3e:01:02:03", "xenbr1"),)
    cfg = vm_config("a", 1024, 1024, 1, disks=disks, nics=nics)
    assert parse_vm_config(parse(dumps(cfg))) == VmConfig("a", None, 1024, 1024, 1, "linux",
                                                          disks, nics)
    # a disk but no vif: the domain gets no vif (the config is complete)
    only_disk = parse_vm_config(vm_config("a", 1024, 1024, 1, disks=disks))
    assert (only_disk.disks, only_disk.nics) == (disks, ())
    # no disk or vif at all (other kinds do not count): the host's defaults
    bare = parse_vm_config(parse("(vm (name a) (memory 1) (device (vfb (type vnc))))"))
    assert (bare.disks, bare.nics) == (None, None)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        ("(vm (memory 64))", InvalidArgumentError, "no field 'name'"),
        ("(vm (name a/b) (memory 64))", InvalidArgumentError, "field 'name'"),
        ("(vm (name a) (memory 64) (uuid nope))", InvalidArgumentError, "field 'uuid'"),
        ("(vm (name a))", InvalidArgumentError, "no memory"),
        ("(vm (name a) (memory 0))", InvalidArgumentError, "no memory"),
        ("(vm (name a) (memory 64) (maxmem 32))", InvalidArgumentError, "below memory"),
        ("(vm (name a) (memory 64) (vcpus 0))", InvalidArgumentError, "vcpus"),
        ("(vm (name a) (memory lots))", ProtocolError, "field 'memory'"),
        ("(vm (name a) (memory 64) (vcpus -2))", ProtocolError, "field 'vcpus'"),
        ("(config (name a) (memory 64))", ProtocolError, r"\(vm \.\.\.\)"),
    ],
)
def test_bad_configs(text: str, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        parse_vm_config(parse(text))


# -- errors and the node record -------------------------------------------------------------


@pytest.mark.parametrize("message", ["Domain not found", "it's gone", "", 'a "b" \n c'])
def test_error_sexpr_round_trips(message: str) -> None:
    text = dumps(error_sexpr(message))
    assert text.startswith("(xend.err ")
    assert parse_error(parse(text)) == message


def test_error_sexpr_uses_xends_quoting() -> None:
    assert dumps(error_sexpr("No such domain x")) == "(xend.err 'No such domain x')"
    assert dumps(error_sexpr("can't")) == '(xend.err "can\'t")'


@pytest.mark.parametrize(
    ("sx", "message"),
    [
        (parse("(domain (name x))"), None),
        ("xend.err", None),
        ([], None),
        (["xend.err"], ""),
        (parse("(xend.err (a b) c)"), "(a b) c"),
    ],
)
def test_parse_error(sx: Sx, message: str | None) -> None:
    assert parse_error(sx) == message


# The constructed example of realdata/xend/PROTOCOL.md (not a capture).
NODE = """(node (system Linux) (host dom0) (release 2.6.18-xen) (version '#1 SMP')
 (machine x86_64) (nr_cpus 4) (nr_nodes 1) (cores_per_socket 2)
 (threads_per_core 2) (cpu_mhz 2400) (hw_caps 'bfebfbff:20000800:0:0')
 (total_memory 4095) (free_memory 1024) (node_to_cpu 'node0:0-3')
 (xen_major 3) (xen_minor 4) (xen_extra .0) (xen_caps 'xen-3.0-x86_64 hvm-3.0-x86_64')
 (xen_scheduler credit) (xen_pagesize 4096) (xend_config_format 4))"""


def test_node_record_reads_protocols_example() -> None:
    node = parse_node_record(parse(NODE))
    assert node["version"] == "#1 SMP"
    assert node["xen_caps"] == "xen-3.0-x86_64 hvm-3.0-x86_64"
    assert node["xend_config_format"] == "4"
    assert node["total_memory"] == "4095"
    assert len(node) == 21


def test_node_record_round_trips() -> None:
    fields: dict[str, str | int] = {"host": "dom0", "nr_cpus": 4, "version": "#1 SMP",
                                    "xen_extra": ".0", "empty": ""}
    rec = node_record(fields)
    assert dumps(rec).startswith("(node (host dom0) (nr_cpus 4) (version '#1 SMP')")
    assert parse_node_record(parse(dumps(rec))) == {k: str(v) for k, v in fields.items()}


def test_node_record_edge_cases() -> None:
    assert parse_node_record(parse("(node (a 1) (a 2) (b) (c (x y) z))")) == {
        "a": "1", "b": "", "c": "(x y) z"
    }
    for bad in ("(node a)", "(node ())", "(node ((a) 1))", "(domain (a 1))", "node"):
        with pytest.raises(ProtocolError):
            parse_node_record(parse(bad))
    with pytest.raises(InvalidArgumentError):
        node_record({"": 1})
