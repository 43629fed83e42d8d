"""The table view: the playing surface top-down, in millimetres. model.py (table.yaml, the view's size and
mappings), maps.py (remap tables: one pass from the raw frame), detect.py (finding the table, drift), preview.py
(drawing it)."""

from __future__ import annotations

from cuecast.config import Config
from cuecast.table.model import TableError, TableGeometry, TableView, load_table

__all__ = ["TableError", "TableGeometry", "TableView", "load_table", "view_of"]


def view_of(cfg: Config, geometry: TableGeometry) -> TableView:
    return TableView(geometry, cfg.table.px_per_mm, cfg.table.margin_mm)
