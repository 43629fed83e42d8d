"""The native GStreamer plugin (libgstcuecast.so, C sources in native/): where it is and loading it.

Owns finding the plugin that `scripts/setup.sh` builds (meson + ninja, copied into the package as
`cuecast/_native/libgstcuecast.so`, or `$CUECAST_NATIVE_DIR`), registering it with GStreamer in this
process, and the error that says how to build it. The capture process cannot run without it: its elements
(`cuecastremap`, `cuecastpack`) are the backend's per-frame path, with no Python in it.
"""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_FILE = "libgstcuecast.so"
ELEMENTS = ("cuecastremap", "cuecastpack", "cuecaststamp")
BUILD_HINT = ("build it with `make setup` (scripts/setup.sh: gcc, meson and libgstreamer-plugins-base1.0-dev "
              "from Debian, then meson + ninja in native/)")


class NativeError(Exception):
    """The native plugin is missing or does not load; the message says how to build it."""


def plugin_dir() -> Path:
    """Where the plugin is looked for: $CUECAST_NATIVE_DIR, else the package's _native folder."""
    override = os.environ.get("CUECAST_NATIVE_DIR")
    return Path(override) if override else Path(__file__).parents[1] / "_native"


def plugin_path() -> Path:
    return plugin_dir() / PLUGIN_FILE


def load() -> Path:
    """Register the plugin's elements in this process (idempotent); NativeError if it cannot be used."""
    from cuecast.core.gst import Gst

    if all(Gst.ElementFactory.find(e) is not None for e in ELEMENTS):
        return plugin_path()
    path = plugin_path()
    if not path.is_file():
        raise NativeError(f"the native plugin {path} is missing: {BUILD_HINT}")
    try:
        plugin = Gst.Plugin.load_file(str(path))
    except Exception as e:  # noqa: BLE001 - GLib.Error with the loader's reason
        raise NativeError(f"the native plugin {path} does not load ({e}); rebuild it: {BUILD_HINT}") from None
    Gst.Registry.get().add_plugin(plugin)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        raise NativeError(f"the native plugin {path} lacks {', '.join(missing)}; rebuild it: {BUILD_HINT}")
    return path


def kernel(wanted: str = "auto") -> str:
    """Which pixel kernels the native elements run when `wanted` ("auto", "avx2", "plain-c") is asked for on
    this CPU: "avx2" or "plain-c"."""
    from cuecast.core.gst import Gst

    load()
    element = Gst.ElementFactory.make("cuecastremap", None)
    element.set_property("kernel", wanted)
    return str(element.get_property("kernel"))
