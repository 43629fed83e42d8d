"""The capture process's life (`cuecast _capture`, started by the supervisor): start the CaptureService, say
ready, send heartbeats while its loop runs, apply SIGHUP reloads, stop on SIGTERM; exit 2 for problems a
person must fix."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from cuecast.capture.service import FIRST_RESULT_TIMEOUT_S, CaptureService
from cuecast.config import reread
from cuecast.core.errors import EXIT_BAD_INPUT, EXIT_OK, StartupError
from cuecast.core.log import setup_logging
from cuecast.core.priority import set_priority
from cuecast.protocol.worker import Heartbeat, start_worker

log = logging.getLogger(__name__)


def reload(service: CaptureService) -> None:
    """SIGHUP: re-read the config (the supervisor already checked it) and apply this process's live keys."""
    new = reread(service.config_path, service.overrides)
    if new is None:
        return
    applied = service.apply_config(new)
    if applied:
        log.info("capture: applied %s", ", ".join(applied))


def main() -> int:
    """`python -m cuecast _capture`: run until SIGTERM; exit 2 for problems a person must fix."""

    start = start_worker()
    runtime, cfg, config_path, overrides = start.runtime, start.config, start.config_path, start.overrides
    if cfg is None:
        return EXIT_BAD_INPUT
    setup_logging(cfg.log.level, cfg.log.format, role="capture")
    priority = set_priority(cfg.priority.capture_nice, cfg.priority.realtime)  # before any thread starts
    heartbeat = Heartbeat()
    stop = threading.Event()
    hup = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    service = CaptureService(cfg, runtime, config_path, overrides)
    service.priority = priority
    try:
        service.start()
    except StartupError as e:
        print(f"cuecast: error: {e}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    try:
        spec = service.spec
        if spec is not None and spec.kind == "file":
            error = service.wait_first_result(FIRST_RESULT_TIMEOUT_S)
            if error:
                print(f"cuecast: error: source {spec.location}: {error}", file=sys.stderr, flush=True)
                return EXIT_BAD_INPUT
        heartbeat.ready()
        while not stop.wait(1.0):
            if hup.is_set():
                hup.clear()
                reload(service)
            if service.pipeline is not None and service._loop_thread is not None and service._loop_thread.is_alive():
                heartbeat.alive()
    finally:
        service.stop()
    return EXIT_OK
