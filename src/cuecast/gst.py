"""GStreamer import and one-time initialisation, shared by every module that builds pipelines."""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstApp, GstVideo  # noqa: E402

Gst.init(None)

__all__ = ["GLib", "Gst", "GstApp", "GstVideo", "element_available"]


def element_available(name: str) -> bool:
    """True when a GStreamer element factory of this name is installed."""
    return Gst.ElementFactory.find(name) is not None
