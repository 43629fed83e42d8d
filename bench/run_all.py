"""`make bench`: run every bench and gather their reports into bench/results/latest.md."""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = ["backend", "trace", "table", "spine", "mjpeg", "rtsp", "replay", "webrtc", "fisheye", "full_load"]


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    t0 = time.monotonic()
    for name in BENCHES:
        print(f"== bench {name}", flush=True)
        runpy.run_module(f"bench.{name}", run_name="__main__")
    results = HERE / "results"
    parts = [(results / f"{n}.md").read_text() for n in BENCHES if (results / f"{n}.md").exists()]
    cmd = "make bench"
    (results / "latest.md").write_text(f"# cuecast bench results (`{cmd}`)\n\n" + "\n".join(parts))
    print(f"wrote {results / 'latest.md'} in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
