"""Which URIs name an embedded QEMU root (``xvirt.testing.qemu.embedded_root_of``): the
harness hands out its one connection for exactly those, so a URI read wrongly would either
exhaust libvirt's opens or hand one root's connection out for another URI."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvirt.testing.qemu import embedded_root_of

roots = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                min_size=1).map(lambda tail: "/" + tail)


@given(root=roots)
def test_the_root_of_an_embed_uri_is_read_back_exactly(root: str) -> None:
    assert embedded_root_of("qemu:///embed?" + urlencode({"root": root})) == root


@given(root=roots, other=st.sampled_from(["qemu:///system", "qemu:///session",
                                          "qemu+unix:///embed", "qemu://host/embed",
                                          "test:///embed", "qemu:///embed/"]))
def test_no_other_uri_names_a_root(root: str, other: str) -> None:
    assert embedded_root_of(other + "?" + urlencode({"root": root})) is None


@pytest.mark.parametrize("uri", [
    "qemu:///embed?root=/a&root=/b",  # which one libvirt would take is not ours to guess
    "qemu:///embed",
    "qemu:///embed?other=/a",
])
def test_an_embed_uri_without_one_root_names_none(uri: str) -> None:
    assert embedded_root_of(uri) is None


def test_the_harness_uri_names_its_root() -> None:
    assert embedded_root_of("qemu:///embed?root=/tmp/xvirt-qemu-embed-k2_x") == \
        "/tmp/xvirt-qemu-embed-k2_x"
    assert embedded_root_of(None) is None
