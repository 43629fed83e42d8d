"""Entry point for GStreamer's Python plugin loader: makes `fisheyeundistort` visible to gst-launch-1.0.

Used through `eval "$(cuecast gst-env)"`, which puts this folder's parent on GST_PLUGIN_PATH.
"""

from cuecast.fisheye.element import ELEMENT_NAME, FisheyeUndistort
from cuecast.gst import Gst

__gstelementfactory__ = (ELEMENT_NAME, Gst.Rank.NONE, FisheyeUndistort)
