"""Stopping the daemon while a client waits for events: the long poll is answered at
once, with the events so far, and the daemon stops cleanly.

The fault: ``xvirt event --loop`` holds a long poll of up to 10 s open; on SIGTERM the
daemon waited for it as a request in flight (5 s), then for its worker (5 s more),
then closed its connection under the worker, which logged waitress's traceback
(``Exception when servicing``) when it finally answered.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import httpx

from xvirt.daemon.process import Daemon, DaemonConfig
from xvirt.wire import sxp
from xvirt.wire.events import parse_events

HANG_GUARD_S = 60.0  # a hung shutdown fails the test instead of the suite


def test_a_waiting_event_client_is_answered_and_the_daemon_stops_cleanly(
        tmp_path: Path) -> None:
    log = io.StringIO()
    sock = tmp_path / "ctl.sock"
    # a grace far shorter than the poll's 10 s: only an answer at once can arrive
    daemon = Daemon(DaemonConfig(state_dir=tmp_path / "state", unix_socket=sock, empty=True,
                                 shutdown_grace_s=0.5), log=log)
    daemon.start()
    assert daemon.host is not None
    host = daemon.host
    served = threading.Thread(target=daemon.serve, name="daemon")
    served.start()
    answers: list[httpx.Response | BaseException] = []
    latest_seen: list[int] = []

    def poll() -> None:
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)),
                              timeout=HANG_GUARD_S) as client:
                latest = host.events_since(0).latest
                latest_seen.append(latest)
                answers.append(client.get("http://xend/xvirt/events",
                                          params={"after": str(latest), "timeout": "10"}))
        except BaseException as exc:  # reported by the assertions below
            answers.append(exc)

    waiter = threading.Thread(target=poll, name="event client")
    waiter.start()
    while host.event_waiters == 0 and waiter.is_alive():
        waiter.join(0.01)
    assert host.event_waiters == 1, answers
    daemon.stop()
    served.join(HANG_GUARD_S)
    waiter.join(HANG_GUARD_S)
    assert not served.is_alive() and not waiter.is_alive()
    (answer,) = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200
    batch = parse_events(sxp.parse(answer.text))
    assert batch.latest == latest_seen[0] and not batch.events  # nothing happened meanwhile
    assert "Exception" not in log.getvalue() and "Traceback" not in log.getvalue()
    assert log.getvalue().endswith("stopped\n")

