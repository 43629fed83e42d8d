"""The `fisheyeundistort` GStreamer element: fisheye correction with cv2.remap, I420 (plane by plane) or BGR.

Owns the element (a GstBase.BaseTransform written in Python): maps built once per caps, remapping straight
from the input buffer into the output buffer (no extra copies), `enabled` as live pass-through, and
registration, in-process (`register()`) or for gst-launch through the Python plugin loader (`cuecast
gst-env`). A calibration that cannot be used is an element error naming the file and field.
"""

from __future__ import annotations

import logging
import threading

import cv2
import gi
import numpy as np

gi.require_version("GstBase", "1.0")
from gi.repository import GObject, GstBase  # noqa: E402

from cuecast.fisheye.maps import Maps, build_maps, luma_lut  # noqa: E402
from cuecast.fisheye.model import CalibrationError, FisheyeModel, load_model  # noqa: E402
from cuecast.gst import Gst, GstVideo, MapError, mapped  # noqa: E402

log = logging.getLogger(__name__)

ELEMENT_NAME = "fisheyeundistort"
CAPS = Gst.Caps.from_string("video/x-raw,format={I420,BGR}")
CHROMA_BORDER = 128  # neutral chroma outside the image (black, not green)
POOL_MIN_BUFFERS = 4


def _plane(mi_data: memoryview, info: GstVideo.VideoInfo, idx: int, width: int, height: int,
           channels: int = 1) -> np.ndarray:
    stride = info.stride[idx]
    shape = (height, width, channels) if channels > 1 else (height, width)
    strides = (stride, channels, 1) if channels > 1 else (stride, 1)
    return np.ndarray(shape, np.uint8, buffer=mi_data, offset=info.offset[idx], strides=strides)


class FisheyeUndistort(GstBase.BaseTransform):
    __gtype_name__ = "CuecastFisheyeUndistort"
    __gstmetadata__ = (
        "Fisheye undistort", "Filter/Effect/Video",
        "Corrects a fisheye (Kannala-Brandt, OpenCV cv2.fisheye) lens with remap maps built once per caps",
        "cuecast",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
    )
    __gproperties__ = {
        "calibration": (str, "Calibration", "camera.yaml (or OpenCV FileStorage YAML) to correct with", None,
                        GObject.ParamFlags.READWRITE),
        "balance": (float, "Balance", "0: only valid pixels, 1: the whole field of view (-1: from the file)",
                    -1.0, 1.0, -1.0, GObject.ParamFlags.READWRITE),
        "fov-scale": (float, "FOV scale", "Divides the output focal length (0: from the file)", 0.0, 10.0, 0.0,
                      GObject.ParamFlags.READWRITE),
        "enabled": (bool, "Enabled", "Correct frames; false passes them through untouched", True,
                    GObject.ParamFlags.READWRITE),
    }

    def __init__(self) -> None:
        super().__init__()
        self.calibration: str | None = None
        self.balance = -1.0
        self.fov_scale = 0.0
        self.enabled = True
        self.model: FisheyeModel | None = None  # set directly by the service, or loaded from `calibration`
        self.maps: Maps | None = None
        self._info: GstVideo.VideoInfo | None = None
        self._lock = threading.Lock()
        self._luma_lut: np.ndarray | None = None  # brightness/contrast folded into the pass (None: identity)

    # -- properties ----------------------------------------------------------------------------------

    def do_get_property(self, prop: GObject.ParamSpec) -> object:
        return {"calibration": self.calibration, "balance": self.balance, "fov-scale": self.fov_scale,
                "enabled": self.enabled}[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value: object) -> None:
        if prop.name == "calibration":
            self.calibration = str(value) if value else None
            self.model = None
        elif prop.name == "balance":
            self.balance = float(value)  # type: ignore[arg-type]
        elif prop.name == "fov-scale":
            self.fov_scale = float(value)  # type: ignore[arg-type]
        elif prop.name == "enabled":
            self.enabled = bool(value)
            self.set_passthrough(not self.enabled)
            return
        with self._lock:
            self.maps = None  # rebuilt for the next frame with the new parameters

    def set_luma(self, brightness: float, contrast: float) -> None:
        """Brightness/contrast applied to the corrected luma in the same pass (maps.luma_lut)."""
        self._luma_lut = luma_lut(brightness, contrast)

    def set_model(self, model: FisheyeModel) -> None:
        with self._lock:
            self.model = model
            self.maps = None

    # -- GstBaseTransform ----------------------------------------------------------------------------

    def do_start(self) -> bool:
        self.set_passthrough(not self.enabled)
        if self.model is None and self.calibration:
            try:
                self.model = load_model(self.calibration)
            except CalibrationError as e:
                self._error(str(e))
                return False
        if self.model is None:
            self._error("no calibration: set the calibration property to a camera.yaml")
            return False
        return True

    def _error(self, text: str) -> None:
        self.post_message(Gst.Message.new_error(
            self, GLibError(text), f"{ELEMENT_NAME}: {text}"))

    def do_decide_allocation(self, query: Gst.Query) -> bool:
        """Output buffers from a video buffer pool: reused memory instead of a fresh allocation per frame."""
        caps, _need_pool = query.parse_allocation()
        info = GstVideo.VideoInfo.new_from_caps(caps) if caps is not None else None
        if info is not None:
            pool: Gst.BufferPool | None = None
            size, min_bufs, max_bufs = info.size, POOL_MIN_BUFFERS, 0
            if query.get_n_allocation_pools() > 0:
                pool, size, min_bufs, max_bufs = query.parse_nth_allocation_pool(0)
                size = max(size, info.size)
            if pool is None:
                pool = GstVideo.VideoBufferPool()
            config = pool.get_config()
            Gst.BufferPool.config_set_params(config, caps, size, min_bufs, max_bufs)
            pool.set_config(config)
            if query.get_n_allocation_pools() > 0:
                query.set_nth_allocation_pool(0, pool, size, min_bufs, max_bufs)
            else:
                query.add_allocation_pool(pool, size, min_bufs, max_bufs)
        return GstBase.BaseTransform.do_decide_allocation(self, query)

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        if info is None:
            return False
        self._info = info
        try:
            self._build(info)
        except CalibrationError as e:
            self._error(str(e))
            return False
        return True

    def _build(self, info: GstVideo.VideoInfo) -> Maps:
        assert self.model is not None
        fmt = info.finfo.format
        maps = build_maps(
            self.model, info.width, info.height, chroma=fmt == GstVideo.VideoFormat.I420,
            balance=None if self.balance < 0 else self.balance,
            fov_scale=None if self.fov_scale <= 0 else self.fov_scale,
        )
        with self._lock:
            self.maps = maps
        log.info("fisheye maps built for %dx%d %s", info.width, info.height, info.finfo.name)
        return maps

    def do_transform(self, inbuf: Gst.Buffer, outbuf: Gst.Buffer) -> Gst.FlowReturn:
        info = self._info
        if info is None:
            return Gst.FlowReturn.NOT_NEGOTIATED
        maps = self.maps
        if maps is None:
            try:
                maps = self._build(info)
            except CalibrationError as e:
                self._error(str(e))
                return Gst.FlowReturn.ERROR
        try:
            with mapped(inbuf, Gst.MapFlags.READ) as src, mapped(outbuf, Gst.MapFlags.WRITE) as dst:
                w, h = info.width, info.height
                lut = self._luma_lut
                if info.finfo.format == GstVideo.VideoFormat.BGR:
                    out = _plane(dst, info, 0, w, h, 3)
                    self._remap(_plane(src, info, 0, w, h, 3), out, maps.full, 0)
                    if lut is not None:
                        cv2.LUT(out, lut, dst=out)
                else:
                    assert maps.half is not None
                    luma = _plane(dst, info, 0, w, h)
                    self._remap(_plane(src, info, 0, w, h), luma, maps.full, 0)
                    if lut is not None:
                        cv2.LUT(luma, lut, dst=luma)
                    for idx in (1, 2):
                        self._remap(_plane(src, info, idx, w // 2, h // 2),
                                    _plane(dst, info, idx, w // 2, h // 2), maps.half, CHROMA_BORDER)
        except MapError:
            return Gst.FlowReturn.ERROR
        return Gst.FlowReturn.OK

    @staticmethod
    def _remap(src: np.ndarray, dst: np.ndarray, maps: tuple[np.ndarray, np.ndarray], border: int) -> None:
        if dst.flags.c_contiguous:
            cv2.remap(src, maps[0], maps[1], cv2.INTER_LINEAR, dst=dst, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=border)
        else:  # padded rows (odd sizes in gst-launch): OpenCV would write to a temporary, so copy back
            dst[...] = cv2.remap(src, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                 borderValue=border)


def GLibError(text: str) -> object:  # noqa: N802 - mimics a constructor
    from gi.repository import GLib

    return GLib.Error.new_literal(Gst.CoreError.quark(), text, Gst.CoreError.FAILED)


GObject.type_register(FisheyeUndistort)
_registered = False


def register() -> None:
    """Make `fisheyeundistort` available to Gst.parse_launch in this process."""
    global _registered
    if not _registered:
        _registered = Gst.Element.register(None, ELEMENT_NAME, Gst.Rank.NONE, FisheyeUndistort)
