"""The table view: the playing surface top-down, in millimetres. model.py (table.yaml, the view's size and
mappings), maps.py (remap tables: one pass from the raw frame), detect.py (finding the table, drift), and
`resolve` here: which table geometry a service uses."""

from __future__ import annotations

from cuecast.config import Config
from cuecast.table.model import TableError, TableGeometry, TableView, load_table

__all__ = ["TableError", "TableGeometry", "TableView", "load_table", "resolve", "view_of"]


def resolve(cfg: Config, source_kind: str) -> tuple[TableGeometry | None, str]:
    """(geometry, where it came from): table.calibration, else the demo source's own table, else none."""
    if cfg.table.calibration is not None:
        return load_table(cfg.table.calibration).scaled_to(cfg.source.width, cfg.source.height), str(
            cfg.table.calibration)
    if source_kind == "demo":
        from cuecast.fisheye.demo import DEMO_TABLE_MM, demo_model, demo_table_corners
        from cuecast.fisheye.maps import output_matrix

        w, h = cfg.source.width, cfg.source.height
        P = output_matrix(demo_model().scaled_to(w, h), cfg.fisheye.balance, cfg.fisheye.fov_scale)
        return TableGeometry(demo_table_corners(P), DEMO_TABLE_MM, (w, h)), "built-in demo table"
    return None, ""


def view_of(cfg: Config, geometry: TableGeometry) -> TableView:
    return TableView(geometry, cfg.table.px_per_mm, cfg.table.margin_mm)
