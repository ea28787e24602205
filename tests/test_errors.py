"""One error hierarchy; every error carries and names what failed, across pickling too."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

import xvirt
from xvirt import errors
from xvirt.errors import XvirtError

CLASSES = [getattr(errors, n) for n in errors.__all__]
SUBCLASSES = [c for c in CLASSES if c is not XvirtError]
FIELDS = {"uri": "sim:///lab", "domid": 7, "name": "web1",
          "uuid": "6695eb01-f6a4-8304-79aa-97f2502e193f", "op": "pause"}


def test_the_documented_classes_exist() -> None:
    names = set(errors.__all__)
    assert {"XvirtError", "NoDomainError", "ReadOnlyError", "HostUnreachableError",
            "ConnectionClosedError", "ProtocolError", "InvalidArgumentError", "AuthError",
            "UnsupportedError", "OperationFailedError", "HandleClosedError"} <= names


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda c: c.__name__)
def test_every_class_derives_from_xvirt_error(cls: type[XvirtError]) -> None:
    assert issubclass(cls, XvirtError)
    assert issubclass(cls, Exception)
    assert getattr(xvirt, cls.__name__) is cls  # re-exported at the top


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_keyword_fields_are_kept_and_named(cls: type[XvirtError]) -> None:
    exc = cls("it failed", **FIELDS)
    assert exc.message == "it failed"
    for k, v in FIELDS.items():
        assert getattr(exc, k) == v
    text = str(exc)
    assert text.startswith("it failed (")
    for k, v in FIELDS.items():
        assert f"{k}={v!r}" in text
    assert exc.context() == FIELDS


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_without_fields_str_is_the_message(cls: type[XvirtError]) -> None:
    exc = cls("plain")
    assert str(exc) == "plain"
    assert exc.context() == {}
    assert (exc.uri, exc.domid, exc.name, exc.uuid, exc.op) == (None,) * 5


def test_only_set_fields_are_named() -> None:
    exc = errors.NoDomainError("gone", domid=0)
    assert str(exc) == "gone (domid=0)"  # 0 is a value, not "unset"
    assert exc.context() == {"domid": 0}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_pickle_round_trips_with_fields(cls: type[XvirtError]) -> None:
    exc = cls("it failed", **FIELDS)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert back.message == "it failed"
    assert back.context() == FIELDS
    assert str(back) == str(exc)


@given(
    message=st.text(),
    uri=st.none() | st.text(),
    domid=st.none() | st.integers(),
    name=st.none() | st.text(),
    uuid=st.none() | st.text(),
    op=st.none() | st.text(),
    cls=st.sampled_from(CLASSES),
)
def test_pickle_property(message: str, uri: str | None, domid: int | None, name: str | None,
                         uuid: str | None, op: str | None, cls: type[XvirtError]) -> None:
    exc = cls(message, uri=uri, domid=domid, name=name, uuid=uuid, op=op)
    back = pickle.loads(pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is cls
    assert (back.message, back.uri, back.domid, back.name, back.uuid, back.op) == (
        message, uri, domid, name, uuid, op)


def test_errors_can_be_caught_by_the_base() -> None:
    with pytest.raises(XvirtError):
        raise errors.ProtocolError("bad answer", uri="xend://h")
