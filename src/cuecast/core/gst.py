"""GStreamer import and one-time initialisation, shared by every module that builds pipelines."""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from gi.repository import GLib, Gst, GstVideo  # noqa: E402

Gst.init(None)

__all__ = ["GLib", "Gst", "GstVideo", "element_available", "error_text", "mapped", "pending_error"]


def element_available(name: str) -> bool:
    """True when a GStreamer element factory of this name is installed."""
    return Gst.ElementFactory.find(name) is not None


def error_text(msg: Gst.Message) -> str:
    """An ERROR message as "element: message"."""
    err, _debug = msg.parse_error()
    return f"{msg.src.get_name() if msg.src else '?'}: {err.message}"


def pending_error(pipeline: Gst.Pipeline) -> str | None:
    """The first ERROR waiting on a pipeline's bus (a failed state change leaves it there), as text."""
    msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    return error_text(msg) if msg is not None else None


class MapError(Exception):
    """A buffer could not be mapped."""


@contextmanager
def mapped(buf: Gst.Buffer, flags: Gst.MapFlags) -> Iterator[memoryview]:
    """The buffer's memory for the duration of the block (unmapped however the block ends)."""
    ok, info = buf.map(flags)
    if not ok:
        raise MapError("could not map buffer")
    try:
        yield info.data
    finally:
        buf.unmap(info)
