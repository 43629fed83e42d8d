"""`cuecast calibrate capture | solve | preview | table`: the calibration toolchain on the command line.

Owns argument handling, progress bars and the printed reports; the work itself is in fisheye/calibration.py
(the lens) and table/ (the table).
Exit codes: 0 done, 1 could not finish (too few views, board never found), 2 bad input.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cuecast.core.errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK


def progress(i: int, n: int, label: str = "", width: int = 30) -> None:
    """A one-line progress bar on stderr."""
    done = int(width * i / max(n, 1))
    sys.stderr.write(f"\r[{'#' * done}{'.' * (width - done)}] {i}/{n} {label[:50]:<50}")
    if i >= n:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _fail(msg: str, code: int = EXIT_FAILURE) -> int:
    print(f"cuecast calibrate: {msg}", file=sys.stderr)
    return code


def cmd_solve(args: argparse.Namespace) -> int:
    from cuecast.lens.calibration import CalibrationFailed, View, detect, parse_board, solve

    try:
        board = parse_board(args.board)
    except ValueError as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    paths = sorted(p for p in glob.glob(args.images) if Path(p).name != VIEWS_FILE)
    if not paths:
        return _fail(f"no images match {args.images!r}", EXIT_BAD_INPUT)
    problem = _views_file_problem(paths)
    if problem:
        return _fail(problem, EXIT_BAD_INPUT)
    views: list[View] = []
    unreadable, not_found = [], []
    for i, path in enumerate(paths, 1):
        progress(i - 1, len(paths), f"detecting {Path(path).name}")
        img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            unreadable.append(path)
            continue
        corners = detect(img, board)
        if corners is None:
            not_found.append(Path(path).name)
            continue
        views.append(View(Path(path).name, corners, (img.shape[1], img.shape[0])))
    progress(len(paths), len(paths), "detection done")
    for p in unreadable:
        print(f"  skipped {p}: not an image OpenCV can read")
    if not_found:
        print(f"  board not found in {len(not_found)} image(s): {', '.join(not_found[:10])}"
              + (" ..." if len(not_found) > 10 else ""))
    if not views:
        return _fail(
            f"the {board[0]}x{board[1]} board was not found in any of the {len(paths)} images. Check --board "
            "(inner corners, columns x rows: a 10x7-square board is 9x6), lighting and focus"
        )
    print(f"board found in {len(views)} of {len(paths)} images; solving ...")
    try:
        sol = solve(views, board, args.square_mm / 1000.0, balance=args.balance, progress=lambda m: print(f"  {m}"))
    except CalibrationFailed as e:
        return _fail(str(e))
    print("\nper-image RMS (px):")
    for name, err in sorted(sol.per_view_rms.items()):
        print(f"  {name:<40} {err:.3f}")
    for name, reason in sorted(sol.dropped.items()):
        print(f"  {name:<40} dropped: {reason}")
    for note in sol.notes:
        print(f"note: {note}")
    K, D = sol.model.K, sol.model.D
    print(f"\noverall RMS {sol.rms:.3f} px from {len(sol.used)} views")
    print(f"fx {K[0, 0]:.2f}  fy {K[1, 1]:.2f}  cx {K[0, 2]:.2f}  cy {K[1, 2]:.2f}  "
          f"D {np.array2string(D, precision=5)}")
    print(f"coverage: the board's corners span {100 * sol.coverage:.0f}% of the image"
          + ("  (low: add views near the edges and corners)" if sol.coverage < 0.5 else ""))
    print(f"straightness after correction: worst board row/column {sol.straightness_px:.2f} px from a straight line")
    est = sol.estimate
    if est is None:
        print("map error: not estimated (too few views to leave any out); capture more views")
    else:
        print(f"estimated map error (corner noise {est.noise_px:.2f} px through the solve): p95 {est.p95:.2f} px, "
              f"max {est.max:.2f} px"
              + ("  (over 1 px: add views where the regions below are worst)" if est.p95 > 1 else ""))
        for row in est.regions:
            print("  " + "  ".join(f"{v:5.2f}" for v in row))
    out = Path(args.output)
    sol.model.extra.update({"views_used": len(sol.used), "coverage": round(sol.coverage, 3),
                            "straightness_px": round(sol.straightness_px, 3)})
    if est is not None:
        sol.model.extra["map_error_estimate"] = {"p95": est.p95, "max": est.max, "regions": est.regions}
    sol.model.save(out)
    print(f"wrote {out}")
    return EXIT_OK


VIEWS_FILE = "views.json"  # next to the views: where each came from (camera, size, time, raw or corrected)


def _service_picture(url: str, path: str, token: str | None, otherwise: str) -> tuple[np.ndarray, Any]:
    """(picture, response headers) of GET `path` on the running service; RuntimeError naming what went wrong
    (`otherwise`: what the user can do instead when no service runs)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url.rstrip('/')}{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            data, headers = r.read(), r.headers
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url} answered {e.code}: {e.read().decode(errors='replace').strip()}") from None
    except OSError as e:
        raise RuntimeError(f"no running service at {url} ({e}): start `cuecast serve`, or {otherwise}") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"{url} sent no picture")
    return img, headers


def _raw_from_service(url: str, token: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    """One raw camera frame from the running service (GET /api/camera/raw.jpg) and what it is."""
    path = "/api/camera/raw.jpg"
    img, headers = _service_picture(url, path, token, "give --source DEVICE to read a camera directly")
    return img, {"camera": headers.get("X-Camera") or url, "seq": int(headers.get("X-Frame-Seq") or 0),
                 "corrected": headers.get("X-Corrected") == "true", "from": f"{url.rstrip('/')}{path}"}


def _correction_active(url: str) -> bool | None:
    """Is the running service's correction on (so its shared memory carries corrected frames)? None: unknown."""
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/status", timeout=5) as r:
            status = json.load(r)
    except (OSError, ValueError):
        return None
    fisheye = status.get("fisheye") or {}
    return bool(fisheye.get("active")) or (status.get("table") or {}).get("views", {}).get("shm") == "table"


def _grabber(args: argparse.Namespace) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    """(frame, where it came from) until the caller stops: a source read directly, the service's shared memory
    (--socket: corrected frames when a calibration is active), or by default the service's raw frames."""
    if args.source:
        cap = cv2.VideoCapture(args.source)
        if not cap.isOpened():
            raise RuntimeError(f"cannot open {args.source}")
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame, {"camera": args.source, "corrected": False, "from": args.source}
    url = args.url or f"http://127.0.0.1:{args.http_port}"
    if args.socket:
        from cuecast.consumer import GStreamerFrameConsumer

        corrected = _correction_active(url)
        if corrected:
            print(f"note: {args.socket} carries the corrected picture (a calibration is active): `solve` will "
                  "refuse these views; leave out --socket to take raw frames", file=sys.stderr)
        with GStreamerFrameConsumer(args.socket) as c:
            while True:
                got = c.read(timeout=5)
                if got is None:
                    raise RuntimeError(f"no frames from {args.socket} (is `cuecast serve` running?)")
                frame, info = got
                yield frame, {"camera": f"shm:{args.socket}", "seq": info.seq, "corrected": corrected,
                              "from": str(args.socket)}
    print(f"taking raw camera frames from {url} ...", file=sys.stderr)
    token = args.token or os.environ.get("CUECAST_TOKEN")
    while True:
        yield _raw_from_service(url, token)


def _save_views_file(out: Path, views: dict[str, dict[str, Any]]) -> None:
    import json

    path = out / VIEWS_FILE
    known: dict[str, Any] = {}
    if path.is_file():
        try:
            known = json.loads(path.read_text()).get("views", {})
        except (OSError, ValueError, AttributeError):
            known = {}
    known.update(views)
    tmp = out / f".{VIEWS_FILE}"
    tmp.write_text(json.dumps({"format": 1, "views": known}, indent=1))
    tmp.replace(path)


def _views_file_problem(paths: list[str]) -> str | None:
    """Why these views cannot be solved together (from the views.json beside them), or None."""
    import json

    infos: dict[str, dict[str, Any]] = {}
    for folder in {Path(p).parent for p in paths}:
        f = folder / VIEWS_FILE
        if f.is_file():
            try:
                infos.update(json.loads(f.read_text()).get("views", {}))
            except (OSError, ValueError, AttributeError):
                return f"{f} is not a views file: remove it or capture the views again"
    mine = {Path(p).name: infos[Path(p).name] for p in paths if Path(p).name in infos}
    corrected = sorted(n for n, v in mine.items() if v.get("corrected"))
    if corrected:
        return (f"{len(corrected)} view(s) were taken from the corrected picture ({', '.join(corrected[:5])}"
                f"{' ...' if len(corrected) > 5 else ''}): solving them would find a different lens. Take raw views: "
                "`cuecast calibrate capture --out DIR` against the running service (without --socket) reads the "
                "camera before the correction")
    cameras = {v.get("camera") for v in mine.values()}
    sizes = {tuple(v.get("size") or ()) for v in mine.values()}
    if len(cameras) > 1:
        names = ", ".join(sorted(map(str, cameras)))
        return f"the views come from {len(cameras)} cameras ({names}): solve one camera's views at a time"
    if len(sizes) > 1:
        return (f"the views come in {len(sizes)} sizes ({', '.join('x'.join(map(str, s)) for s in sorted(sizes))}): "
                "capture them all in the camera's mode")
    return None


def cmd_capture(args: argparse.Namespace) -> int:
    from cuecast.lens.calibration import detect, parse_board
    from cuecast.lens.guide import Picker

    try:
        board = parse_board(args.board)
    except ValueError as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    picker: Picker | None = None
    saved: dict[str, dict[str, Any]] = {}
    tried = found = 0
    last, said = 0.0, ""
    deadline = time.monotonic() + args.timeout
    target = f"{args.count} views" if args.count else "complete coverage"
    print(f"capturing until {target}: hold the {board[0]}x{board[1]} board still in each place the guidance "
          "names; a view is kept when the board is still and adds something new", file=sys.stderr)

    def done() -> bool:
        if picker is None:
            return False
        return len(picker.kept) >= args.count if args.count else picker.coverage.complete

    try:
        for frame, origin in _grabber(args):
            if done() or time.monotonic() > deadline:
                break
            if time.monotonic() - last < args.interval:
                continue
            last = time.monotonic()
            tried += 1
            size = (frame.shape[1], frame.shape[0])
            if picker is None:
                picker = Picker(size, board)
            corners = detect(frame, board)
            found += corners is not None
            keep, why = picker.consider(corners)
            if not keep or corners is None:
                if why != said:
                    sys.stderr.write(f"  {why}\n")
                    said = why
                continue
            name = f"view-{len(picker.kept) + 1:03d}.jpg"
            cv2.imwrite(str(out / name), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            saved[name] = {**origin, "size": list(size), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            _save_views_file(out, saved)
            picker.keep(corners)
            cov = picker.coverage
            sys.stderr.write(f"kept {name}: {why}; coverage {100 * cov.fraction:.0f}%\n")
            tips = cov.missing()
            if tips and not done():
                sys.stderr.write(f"  still missing: {tips[0]}" + (f" (and {len(tips) - 1} more)" if len(tips) > 1
                                                                   else "") + "\n")
            said = ""
    except RuntimeError as e:
        return _fail(str(e))
    kept = len(picker.kept) if picker else 0
    if not done():
        tips = picker.coverage.missing() if picker else []
        return _fail(f"stopped after {tried} looks ({found} with the board) with {kept} view(s) kept, before "
                     f"{target}" + (f"; still missing: {'; '.join(tips)}" if tips else "") +
                     f". The whole {board[0]}x{board[1]} board (inner corners) must be in the picture, held still, "
                     "and moved between views")
    print(f"kept {kept} views in {out}" + (" (coverage complete)" if picker and picker.coverage.complete else ""))
    for tip in picker.coverage.missing() if picker else []:
        print(f"  tip: {tip}")
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    from cuecast.lens.calibration import preview
    from cuecast.lens.model import CalibrationError, load_model

    try:
        model = load_model(args.calibration)
        img = cv2.imread(args.image)
        if img is None:
            return _fail(f"{args.image} is not an image OpenCV can read", EXIT_BAD_INPUT)
        model = model.scaled_to(img.shape[1], img.shape[0])
    except CalibrationError as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    cv2.imwrite(args.out, preview(model, img, balance=args.balance))
    print(f"wrote {args.out}")
    return EXIT_OK


def cmd_table(args: argparse.Namespace) -> int:
    from cuecast.config import ConfigError, load_config
    from cuecast.table.detect import detect_table
    from cuecast.table.model import TableError, TableGeometry, TableView, parse_size
    from cuecast.table.preview import draw_corners, render_preview

    try:
        size = parse_size(args.size)
        cfg = load_config(args.config).config
    except (TableError, ConfigError) as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    if args.image:
        frame = cv2.imread(args.image)
        if frame is None:
            return _fail(f"{args.image} is not an image OpenCV can read", EXIT_BAD_INPUT)
        origin = args.image
    else:
        url = args.url or f"http://127.0.0.1:{cfg.http.port}"
        print(f"taking the corrected camera picture from {url} ...", file=sys.stderr)
        try:
            token = args.token or cfg.auth.resolved_token()
            frame, _headers = _service_picture(url, "/api/table/frame.jpg", token, "give --image FRAME")
        except (RuntimeError, ValueError) as e:  # ValueError: an unreadable auth.token_file
            return _fail(str(e))
        origin = url
    h, w = frame.shape[:2]
    if args.corners:
        try:
            values = [float(v) for v in args.corners.split(",")]
            if len(values) != 8:
                raise ValueError
        except ValueError:
            return _fail("--corners: 8 numbers, x,y of top-left, top-right, bottom-right, bottom-left",
                         EXIT_BAD_INPUT)
        corners = tuple(zip(values[::2], values[1::2], strict=True))
        how = "given by hand"
    else:
        print("finding the playing surface (felt colour, then the cushion lines) ...", file=sys.stderr)
        try:
            found = detect_table(frame)
        except TableError as e:
            return _fail(str(e))
        corners = found.corners
        how = f"found: cushion lines fitted to {found.points} edge points, {found.residual_px:.2f} px RMS"
    try:
        table = TableGeometry(tuple(corners), size, (w, h))
    except TableError as e:
        return _fail(str(e), EXIT_BAD_INPUT)
    out = Path(args.output)
    table.save(out)
    view = TableView(table, cfg.table.px_per_mm, cfg.table.margin_mm)
    preview = Path(args.preview) if args.preview else out.with_name(out.stem + "-preview.png")
    top = draw_corners(frame, table.corners)
    bottom = render_preview(frame, view)
    scale = top.shape[1] / bottom.shape[1]
    bottom = cv2.resize(bottom, (top.shape[1], int(bottom.shape[0] * scale)))
    cv2.imwrite(str(preview), np.vstack([top, bottom]))
    names = ("top-left", "top-right", "bottom-right", "bottom-left")
    print(f"table from {origin} ({w}x{h}), corners {how}:")
    for name, (x, y) in zip(names, table.corners, strict=True):
        print(f"  {name:<13} {x:8.2f} {y:8.2f}")
    vw, vh = view.size
    print(f"playing area {size[0]:g} x {size[1]:g} mm; table view {vw}x{vh} px at {view.px_per_mm:g} px/mm, "
          f"margin {view.margin_mm:g} mm")
    print(f"wrote {out} and {preview} (check the grid: its lines must follow the cushions)")
    print(f"use it: table.calibration: {out.resolve()} and shm.view: table (or view: table on any output)")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    cal = sub.add_parser("calibrate", help="calibration: the lens (capture, solve, preview) and the table")
    csub = cal.add_subparsers(dest="calibrate_command", required=True)

    cap = csub.add_parser("capture", help="grab checkerboard views from the running service or a source")
    cap.add_argument("--count", type=int, default=None, help="stop after this many views (default: when the "
                     "guidance says coverage is complete)")
    cap.add_argument("--out", required=True)
    cap.add_argument("--board", default="9x6", help="inner corners COLSxROWS (default 9x6)")
    cap.add_argument("--socket", help="read the service's shared memory instead (corrected frames when a "
                     "calibration is active: solve refuses those)")
    cap.add_argument("--source", help="read directly instead: a file, URL or device OpenCV can open")
    cap.add_argument("--url", help="the running service's API (default: http://127.0.0.1:http.port); the views "
                     "are its raw camera frames (GET /api/camera/raw.jpg)")
    cap.add_argument("--token", help="bearer token, when the service has auth.token (default: $CUECAST_TOKEN)",
                     default=None)
    cap.add_argument("--port", dest="http_port", type=int, default=8000, help="the service's http.port")
    cap.add_argument("--interval", type=float, default=0.5, help="seconds between tries")
    cap.add_argument("--timeout", type=float, default=600)
    cap.set_defaults(func=cmd_capture)

    sol = csub.add_parser("solve", help="compute camera.yaml from checkerboard images")
    sol.add_argument("--images", required=True, help="a glob, e.g. 'views/*.jpg'")
    sol.add_argument("--board", default="9x6", help="inner corners COLSxROWS (default 9x6)")
    sol.add_argument("--square-mm", dest="square_mm", type=float, default=25.0)
    sol.add_argument("--balance", type=float, default=0.0, help="0: only valid pixels .. 1: whole view")
    sol.add_argument("--output", default="camera.yaml")
    sol.set_defaults(func=cmd_solve)

    pre = csub.add_parser("preview", help="before/after image with straight guide lines")
    pre.add_argument("--calibration", required=True)
    pre.add_argument("--image", required=True)
    pre.add_argument("--out", default="report.png")
    pre.add_argument("--balance", type=float)
    pre.set_defaults(func=cmd_preview)

    tab = csub.add_parser("table", help="find the playing surface and write table.yaml (for view: table)")
    tab.add_argument("--size", default="9ft", help="7ft, 8ft, 9ft or WxH in mm (playing area, long side first)")
    tab.add_argument("--output", default="table.yaml")
    tab.add_argument("--image", help="a corrected frame (default: take one from the running service)")
    tab.add_argument("--corners", help="x,y of top-left, top-right, bottom-right, bottom-left (skip detection)")
    tab.add_argument("--preview", help="the preview image (default: OUTPUT-preview.png)")
    tab.add_argument("--url", help="the running service's API (default: http://127.0.0.1:http.port)")
    tab.add_argument("--token", help="bearer token, when the service protects its pictures")
    tab.add_argument("--config", type=Path, help="config for the port, token and table view settings")
    tab.set_defaults(func=cmd_table)
