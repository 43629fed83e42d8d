"""The README's performance figures, filled in from bench/results/ (never typed by hand).

`make bench` ends with `python -m bench.readme --write`: the block between the README's `bench:begin` and
`bench:end` markers is rebuilt from the rows of the results tables named in FIGURES, each with the scenario
it comes from; the machine and commit come from the results' own stamp lines. tests/unit/test_readme_numbers.py
fails when the README's block differs from what the current results give, so a number in the README is
always the one in bench/results/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- bench:begin (filled in by `python -m bench.readme --write` from bench/results; do not edit) -->"
END = "<!-- bench:end -->"

# (scenario, row label as in its results table; a label ending in "*" matches the row that starts with it)
FIGURES: list[tuple[str, list[str]]] = [
    ("backend", [
        "correction on, idle: p99 - anchor p99 (ms)",
        "  ... the capture process at nice -5 alone*",
        "correction on - correction off, idle: p50 (ms)",
        "full load / idle, correction on: p99",
        "glass -> backend numpy, plain gst-launch (no correction), idle",
        "glass -> backend numpy, cuecast correction off, idle",
        "glass -> backend numpy, cuecast correction on, idle",
        "glass -> backend numpy, cuecast correction on, full load",
        "capture stamp (JPEG arrived, before decoding) -> numpy, camera, correction on, idle",
        "RTSP clients fps at full load (tcp, udp), per run",
        "MJPEG 720p x10 fps, lowest client per run",
        "MJPEG 480p x3 fps, lowest client per run",
        "kill -9 of the streaming process at full load: backend's gap*",
        "  ... backend fps after the kill",
        "  ... MJPEG serving again after (s)",
        "service CPU %, full load, camera (all processes)",
        "full load, runs with every output at its rate: camera; testsrc2 clip",
        "testsrc2 clip (file source): capture stamp (after decoding) -> numpy, idle",
        "service CPU %, full load, testsrc2 clip (all processes)",
        "  ... two processes / one process",
    ]),
    ("v4l2", [
        "correction on, idle: p99 - anchor p99 (ms)",
        "  ... the capture process at nice -5 alone*",
        "full load / idle, correction on: p99",
        "glass -> backend numpy, plain gst-launch v4l2src (no correction), idle",
        "glass -> backend numpy, cuecast correction off, idle",
        "glass -> backend numpy, cuecast correction on, idle",
        "glass -> backend numpy, cuecast correction on, full load",
        "backend fps: anchor / correction on idle / full load",
        "1080p60, 3 MJPEG 720p + 1 RTSP watching: backend p99 - anchor p99 (ms)",
        "1080p60: backend fps (frames missing per run)",
        "1080p60: MJPEG 720p x3 fps, lowest client per run; RTSP fps",
        "1080p60 long run, watched: minutes; backend fps (lowest 10 s window); frames missing",
        "  ... of those, dropped at the shared area*",
        "1080p60 long run: p99 - anchor p99 (ms), whole run; worst minute",
        "1080p60 long run: MJPEG 720p x3 lowest client; RTSP fps; CPU %",
        "720p120, idle: backend p99 - anchor p99 (ms)",
        "720p120: backend fps (frames missing per run); anchor fps",
    ]),
    ("trace", ["cuecast_fisheye", "shm_pack", "cuecast_tee"]),
    ("table", ["service CPU %, backend only (all processes)", "service CPU %, full load"]),
    ("spine", ["start to first frame (s)*", "service restart: backend's frame gap (s)*",
               "  ... of it, new service started to the backend's first frame (s)"]),
    ("mjpeg", ["cuecast, CPU per extra client (20 vs 1)", "naive / cuecast CPU at 10 clients",
               "source -> client latency p50 (ms)", "source -> client latency p99 (ms)"]),
    ("rtsp", ["3 clients / 1 client CPU", "connect to first decoded frame (s), gst-launch*"]),
    ("webrtc", ["WebRTC (H.264, viewer's video)", "MJPEG medium (viewer's img)"]),
    ("replay", ["B / A (medians)", "POST /api/clips*"]),
    ("fisheye", ["folded / separate", "correction cost (% of a core)"]),
    ("full_load", ["service CPU % min / median / max*", "RTSP clients fps (tcp, udp)",
                   "MJPEG 8001 clients fps min / median / max (10 clients)", "S2 CPU / kernel floor*"]),
]

# Rows only the full `make bench` writes (the quick form skips running an old commit's code).
FULL_ONLY = {"  ... two processes / one process"}

STAMP = re.compile(r"^_measured (.+?)_$", re.M)


def rows_of(text: str) -> list[list[str]]:
    """Every table row of a results file, as cells (header and rule lines included, harmless)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]


def find(rows: list[list[str]], label: str) -> list[str] | None:
    label = label.strip()
    for r in rows:
        if r[0] == label or (label.endswith("*") and r[0].startswith(label[:-1])):
            return r
    return None


def block(results: Path = RESULTS) -> str:
    """The README's performance block from the results in `results`."""
    lines = ["| scenario (`bench/NAME.py`) | figure | value | target |", "|---|---|---|---|"]
    stamps: dict[str, str] = {}
    for name, labels in FIGURES:
        path = results / f"{name}.md"
        if not path.exists():
            lines.append(f"| {name} | (no results: run `make bench`) | | |")
            continue
        text = path.read_text()
        if m := STAMP.search(text):
            stamps[name] = m.group(1)
        rows = rows_of(text)
        for label in labels:
            r = find(rows, label)
            if r is None:
                lines.append(f"| {name} | {label.rstrip('*')} | (missing from bench/results/{name}.md) | |")
                continue
            value, target = r[1], (r[2] if len(r) > 2 else "")
            if name == "trace":  # element | does | idle | full load
                value, target = f"{r[1]}: idle {r[2]}, full load {r[3]} ms (p50 / p99)", ""
            elif name == "table":  # measure | camera view | table view | target
                value, target = f"camera view {r[1]}, table view {r[2]}", r[3]
            elif name == "webrtc":  # path | frames | p50 | p95 | p99 | max
                value, target = f"p50 {r[2]} / p99 {r[4]} ms (glass -> browser)", ""
            lines.append(f"| {name} | {r[0].strip()} | {value} | {target} |")
    times = sorted(v.split(", ", 1)[0].split(" on ", 1)[0] for v in stamps.values())
    where = sorted({v.split(", ", 1)[1] if ", " in v else v.split(" on ", 1)[-1] for v in stamps.values()})
    head = (f"Measured {times[0]} to {times[-1]} (UTC), " + "; ".join(where) if times else "Not measured yet")
    head += (". Ratios come first where a scenario has an anchor measured in the same run; the full tables and "
             "how each was measured are in `bench/results/latest.md`.")
    return "\n".join([BEGIN, "", head, "", *lines, "", END])


def replace_block(readme: str, new: str) -> str:
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    return readme[:start] + new + readme[end:]


def current_block(readme: str) -> str:
    return readme[readme.index(BEGIN):readme.index(END) + len(END)]


def main() -> None:
    text = README.read_text()
    new = block()
    if "--write" in sys.argv:
        README.write_text(replace_block(text, new))
        print(f"README: performance block rebuilt from {RESULTS}")
    elif current_block(text) != new:
        print("README's performance block differs from bench/results: run `python -m bench.readme --write`")
        sys.exit(1)


if __name__ == "__main__":
    main()
