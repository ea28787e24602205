"""Strings libvirt cannot take (lone surrogates: libvirt-python encodes every string as
UTF-8) give named errors at the libvirt driver's boundary, as on xend (issue 16, item 8);
they were UnicodeEncodeError from the binding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import xvirt
from tests.names import use_name

pytest.importorskip("libvirt")

URI = "libvirt:test:///default"
UNSENDABLE = ["\udcff", "a\udc80b", "test\udcff"]  # (all of them valid file names)


@pytest.fixture
def conn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[xvirt.Connection]:
    monkeypatch.setenv("XVIRT_LIBVIRT_IMAGE_DIR", str(tmp_path / "images"))
    with xvirt.open(URI) as c:
        yield c


@pytest.mark.parametrize("text", UNSENDABLE, ids=repr)
@pytest.mark.parametrize("call", ["rename", "save", "restore"])
def test_a_string_libvirt_cannot_take_is_an_invalid_argument(
        conn: xvirt.Connection, call: str, text: str) -> None:
    dom = conn.lookup_by_name("test")
    assert conn.image_dir is not None
    Path(conn.image_dir).mkdir(parents=True, exist_ok=True)
    (Path(conn.image_dir) / text).write_bytes(b"")  # restore reaches libvirt only if it exists
    with pytest.raises(xvirt.InvalidArgumentError) as info:
        use_name(conn, dom, call, text)
    error = info.value
    assert (error.op, error.uri) == (call, URI)
    assert repr(text) in error.message and "lone surrogate" in error.message
    assert dom.name == "test" and dom.info().state is xvirt.DomainState.RUNNING


@pytest.mark.parametrize("cache", ["on", "off"])
def test_a_name_libvirt_cannot_take_names_no_domain(cache: str) -> None:
    with xvirt.open(f"{URI}?cache={cache}") as c:
        for text in UNSENDABLE:
            with pytest.raises(xvirt.NoDomainError):
                c.lookup_by_name(text)
