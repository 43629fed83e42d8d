"""`make bench`: run every bench, gather their reports into bench/results/latest.md and fill the README's
performance table from them (bench/readme.py).

In the quick form (`CUECAST_BENCH_QUICK=1`, what `make test` runs) every scenario runs for a few seconds into
`CUECAST_BENCH_RESULTS` and the README is left alone. A scenario that fails stops the run with its error.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = ["backend", "v4l2", "trace", "table", "spine", "mjpeg", "rtsp", "replay", "webrtc", "fisheye", "full_load"]


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from bench.common import QUICK, RESULTS

    names = sys.argv[1:] or BENCHES
    t0 = time.monotonic()
    for name in names:
        print(f"== bench {name}", flush=True)
        t = time.monotonic()
        runpy.run_module(f"bench.{name}", run_name="__main__")
        print(f"== bench {name}: {time.monotonic() - t:.0f} s", flush=True)
    parts = [(RESULTS / f"{n}.md").read_text() for n in BENCHES if (RESULTS / f"{n}.md").exists()]
    (RESULTS / "latest.md").write_text("# cuecast bench results (`make bench`)\n\n" + "\n".join(parts))
    print(f"wrote {RESULTS / 'latest.md'} in {time.monotonic() - t0:.0f} s")
    if not QUICK and RESULTS == HERE / "results" and names == BENCHES:
        from bench.readme import README, block, replace_block

        README.write_text(replace_block(README.read_text(), block()))
        print("README: performance table filled in from bench/results")


if __name__ == "__main__":
    main()
