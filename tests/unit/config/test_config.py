"""Config loading: defaults, search order, env overrides, strict validation with key paths and lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from cuecast.config import ConfigError, dump_config, find_config_file, load_config

EXAMPLE = Path(__file__).parents[3] / "config" / "cuecast.example.yaml"


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built-in defaults match the documented outputs (1080p30 source, shm at /tmp/camera-backend)."""
    monkeypatch.setattr("cuecast.config.load.SYSTEM_CONFIG", tmp_path / "absent.yaml")
    loaded = load_config(None, env={})
    assert loaded.path is None
    cfg = loaded.config
    assert (cfg.source.width, cfg.source.height, cfg.source.fps) == (1920, 1080, 30)
    assert str(cfg.shm.socket) == "/tmp/camera-backend"
    assert (cfg.source.width, cfg.source.height) == (1920, 1080) and cfg.shm.width is None


def test_example_config_is_valid_and_equals_defaults() -> None:
    """The shipped example must load, and document exactly the defaults."""
    cfg = load_config(EXAMPLE, env={}).config
    assert "source:" in dump_config(cfg)
    assert cfg.model_dump() == type(cfg)().model_dump()


def test_the_installed_service_config_is_the_example_with_realtime_capture(tmp_path: Path) -> None:
    """`cuecast install-service` writes the example with the socket under /run and the capture process at
    SCHED_RR (the unit grants CAP_SYS_NICE); nothing else differs from the defaults."""
    from cuecast.supervisor.systemd import example_config

    f = tmp_path / "cuecast.yaml"
    f.write_text(example_config())
    cfg = load_config(f, env={}).config
    assert cfg.priority.realtime is True and str(cfg.shm.socket) == "/run/cuecast/camera-backend"
    want = type(cfg)().model_dump()
    want["priority"]["realtime"], want["shm"]["socket"] = True, cfg.shm.socket
    assert cfg.model_dump() == want


def test_search_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert find_config_file(a, {"CUECAST_CONFIG": str(b)}) == a
    assert find_config_file(None, {"CUECAST_CONFIG": str(b)}) == b


def test_unknown_key_names_path_and_line(tmp_path: Path) -> None:
    """A typo must not be silently ignored: the error names the key path and its YAML line."""
    f = tmp_path / "c.yaml"
    f.write_text("source:\n  uri: test:smpte\n  widht: 640\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    msg = str(e.value)
    assert "source.widht" in msg and "line 3" in msg and "unknown key" in msg and str(f) in msg


def test_out_of_range_number_names_key_and_value(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("source:\n  fps: 1000\n")
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert "source.fps" in str(e.value) and "line 2" in str(e.value) and "1000" in str(e.value)


def test_odd_width_is_rejected_with_reason(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("source:\n  width: 1921\n")
    with pytest.raises(ConfigError, match="multiple of 8"):
        load_config(f, env={})


def test_wrong_type_and_bad_yaml(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("shm:\n  enabled: maybe\n")
    with pytest.raises(ConfigError, match=r"shm\.enabled"):
        load_config(f, env={})
    f.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML.*line"):
        load_config(f, env={})
    f.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(f, env={})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})


def test_env_overrides_file_and_cli_overrides_env(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("source:\n  uri: test:smpte\n  fps: 25\n")
    env = {"CUECAST_SOURCE__FPS": "15", "CUECAST_SHM__ENABLED": "false", "CUECAST_SOURCE__RECONNECT__MAX_DELAY": "3"}
    cfg = load_config(f, env=env).config
    assert cfg.source.fps == 15 and cfg.shm.enabled is False and cfg.source.reconnect.max_delay == 3
    cfg = load_config(f, env=env, overrides={"source": {"fps": 10}}).config
    assert cfg.source.fps == 10


def test_bad_env_key_is_named() -> None:
    with pytest.raises(ConfigError, match="CUECAST_SOURCE__NOPE"):
        load_config(None, env={"CUECAST_SOURCE__NOPE": "1", "CUECAST_CONFIG": ""})
    with pytest.raises(ConfigError, match="CUECAST_FPS"):
        load_config(None, env={"CUECAST_FPS": "1"})


def test_the_native_plugin_and_bench_variables_are_not_config_keys() -> None:
    """CUECAST_NATIVE_DIR (documented for the native plugin) once made `serve` refuse
    to start as unknown config keys."""
    env = {"CUECAST_NATIVE_DIR": "/opt/x", "CUECAST_BENCH_QUICK": "1"}
    assert load_config(None, env=env).config.source.fps == 30


def test_shm_size_must_come_in_pairs(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("shm:\n  width: 640\n")
    with pytest.raises(ConfigError, match="together"):
        load_config(f, env={})
    f.write_text("shm:\n  width: 640\n  height: 480\n")
    assert load_config(f, env={}).config.shm.height == 480


def test_partial_section_keeps_that_sections_defaults(tmp_path: Path) -> None:
    """Setting only mjpeg.low.port must not turn the low stream into the medium size."""
    f = tmp_path / "c.yaml"
    f.write_text("mjpeg:\n  low:\n    port: 9002\n")
    low = load_config(f, env={}).config.mjpeg.low
    assert (low.port, low.width, low.height, low.fps) == (9002, 640, 480, 15)


def test_two_servers_on_one_port_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("http:\n  port: 8001\n")
    with pytest.raises(ConfigError, match="both use port 8001"):
        load_config(f, env={})


def test_encoder_keys_under_rtsp_still_load_with_a_warning(tmp_path: Path) -> None:
    """Configs written before the h264: section keep working; each old key is named with its new name."""
    cfg_file = tmp_path / "old.yaml"
    cfg_file.write_text("rtsp:\n  port: 9554\n  fps: 15\n  bitrate_kbps: 2000\n"
                        "degrade:\n  priority: [shm, rtsp, mjpeg]\n")
    loaded = load_config(cfg_file, env={"CUECAST_RTSP__ENCODER": "x264"})
    cfg = loaded.config
    assert (cfg.h264.fps, cfg.h264.bitrate_kbps, cfg.h264.encoder, cfg.rtsp.port) == (15, 2000, "x264", 9554)
    assert cfg.degrade.priority == ["shm", "h264", "mjpeg"]
    text = "\n".join(loaded.warnings)
    for old, new in (("rtsp.fps", "h264.fps"), ("rtsp.bitrate_kbps", "h264.bitrate_kbps"),
                     ("rtsp.encoder", "h264.encoder")):
        assert f"{old} is now {new}" in text
    assert "degrade.priority names rtsp" in text
    assert load_config(None, env={}).warnings == []
