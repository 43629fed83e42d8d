"""Typed configuration: YAML file + CUECAST_* environment + CLI flags, validated at the edge. Needs no GStreamer.

schema.py (every key and its bounds, which apply live), load.py (search order, merge, migration, errors that
name the key and YAML line), reload.py (what a SIGHUP changes), save.py (writing live changes back, masking).
This package exports what the rest of cuecast uses; the modules' own constants stay in them.
"""

from cuecast.config.load import (
    LoadedConfig,
    find_config_file,
    load_config,
)
from cuecast.config.reload import (
    changed_keys,
    reload_plan,
    reread,
)
from cuecast.config.save import (
    dump_config,
    mask_url,
    save_camera,
    save_controls,
    save_lens_path,
    save_table_path,
)
from cuecast.config.schema import (
    QUALITIES,
    AuthConfig,
    CameraConfig,
    Config,
    ConfigError,
    ControlsConfig,
    DegradeConfig,
    FisheyeConfig,
    H264Config,
    HttpConfig,
    LogConfig,
    MjpegConfig,
    MjpegStreamConfig,
    OutputGroup,
    PriorityConfig,
    PublishTarget,
    Quality,
    ReconnectConfig,
    ReplayConfig,
    RtspConfig,
    RtspUser,
    ShmConfig,
    SourceConfig,
    TableConfig,
    View,
    WebRtcConfig,
)

__all__ = [
    "QUALITIES",
    "Quality",
    "AuthConfig",
    "CameraConfig",
    "Config",
    "ConfigError",
    "ControlsConfig",
    "DegradeConfig",
    "FisheyeConfig",
    "H264Config",
    "HttpConfig",
    "LoadedConfig",
    "LogConfig",
    "MjpegConfig",
    "MjpegStreamConfig",
    "OutputGroup",
    "PriorityConfig",
    "PublishTarget",
    "ReconnectConfig",
    "ReplayConfig",
    "RtspConfig",
    "RtspUser",
    "ShmConfig",
    "SourceConfig",
    "TableConfig",
    "View",
    "WebRtcConfig",
    "changed_keys",
    "dump_config",
    "find_config_file",
    "load_config",
    "mask_url",
    "reload_plan",
    "reread",
    "save_camera",
    "save_controls",
    "save_lens_path",
    "save_table_path",
]
