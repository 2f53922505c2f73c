"""Two versions of the text service's code serving one champion, in turns, in one run.

    PYTHONPATH=runtime/src python benchmarks/text_ab.py SERVICE OLD_SRC NEW_SRC [--seconds 10]

SERVICE: a trained text service (configs/config.yaml and its champion bundle, as
``make train`` leaves it; both versions must be able to load the bundle); OLD_SRC and
NEW_SRC: two ``runtime/src`` folders (e.g. a main checkout's and a branch's). Each serves the
champion in its own process as ``make serve`` does (serving.run); the raw HTTP/1.1 load
generator of benchmarks/serving.py sends one review per request, the two servers taking turns
(3 rounds of ``--seconds``); reported: requests per second and each server's CPU
milliseconds per request (/proc), and the load average. Both must answer the same label.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import serving as load_generator  # noqa: E402

REVIEW = ("I love this coffee. It is smooth, rich and not bitter at all; I have bought it three "
          "times and will buy it again. My husband, who usually drinks tea, likes it too. Great "
          "value for the price and it arrives fast. Highly recommended to anyone who likes a "
          "medium roast in the morning with a little milk.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("service")
    parser.add_argument("old_src")
    parser.add_argument("new_src")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "text_ab.json"))
    args = parser.parse_args()
    work = Path(args.service).resolve()
    body = json.dumps({"review": REVIEW}).encode()
    servers = {}
    for name, src in (("old", args.old_src), ("new", args.new_src)):
        port = load_generator.free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        command = [sys.executable, "-c", "import sys; from mlgen_runtime.config import "
                   "load_config; from mlgen_runtime.serving import run; "
                   "run(load_config(sys.argv[1]), port=int(sys.argv[2]))", str(work), str(port)]
        servers[name] = (port, env, command)
    started = os.getloadavg()
    with load_generator.server(servers["old"][2], work, servers["old"][1], servers["old"][0],
                               "/ready") as old_pid, \
            load_generator.server(servers["new"][2], work, servers["new"][1],
                                  servers["new"][0], "/ready") as new_pid:
        pids = {"old": old_pid, "new": new_pid}
        parts: dict[str, list] = {"old": [], "new": []}
        cpu = {"old": 0.0, "new": 0.0}
        for _ in range(args.rounds):
            for name, (port, _, _) in servers.items():
                request = load_generator.request_bytes(port, "POST", "/predict", body)
                before = load_generator.group_cpu_seconds(pids[name])
                parts[name].append(load_generator.load(port, request, 1, 10**9, args.seconds))
                cpu[name] += load_generator.group_cpu_seconds(pids[name]) - before
    results = {}
    for name, runs in parts.items():
        row = load_generator.summary(runs)
        row.pop("latencies", None)
        row["server_cpu_ms_per_request"] = 1000 * cpu[name] / max(row["requests"], 1)
        results[name] = row
    report = {"results": results, "sources": {"old": args.old_src, "new": args.new_src},
              "review_chars": len(REVIEW), "seconds_per_turn": args.seconds,
              "rounds": args.rounds, "load_average": {"start": started, "end": os.getloadavg()}}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
