"""Closing the xend driver never waits on its data lock (issue 18, item 4): a thread
discovering the fast channel holds it while the daemon answers, and at interpreter exit
a thread stopped for good may hold it."""

from __future__ import annotations

import pytest

import xvirt
from tests.locks import HUNG_S, Holder, returns
from xvirt.drivers import closing
from xvirt.drivers.xend import XendDriver
from xvirt.testing.daemon import DaemonProcess


@pytest.fixture
def driver(daemon: DaemonProcess) -> XendDriver:
    conn = xvirt.open(daemon.unix_uri)
    conn.list_domain_ids()  # the fast channel found: something for close to release
    d = conn._driver
    assert isinstance(d, XendDriver) and d._fast is not None
    return d


def test_close_returns_while_another_thread_holds_the_data_lock(driver: XendDriver) -> None:
    holder = Holder(driver._data_lock)
    try:
        assert returns(driver.close)
        assert driver._fast is not None  # released once the holder lets go
    finally:
        holder.release()
    assert driver._closer is not None
    driver._closer.join(HUNG_S)
    assert (driver._fast, driver._reader) == (None, None)
    driver.close()


def test_a_free_data_lock_releases_the_channels_at_once(driver: XendDriver) -> None:
    driver.close()
    assert driver._closer is None and (driver._fast, driver._reader) == (None, None)


def test_at_interpreter_exit_close_touches_nothing(
        driver: XendDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    holder = Holder(driver._data_lock)
    monkeypatch.setattr(closing, "finalizing", lambda: True)
    try:
        assert returns(driver.close)
    finally:
        holder.release()
    assert driver._closer is None and driver._fast is not None  # left to the process's end
    monkeypatch.undo()
    driver._drop_fast()  # what the process's end would have closed
    driver._http.close()
