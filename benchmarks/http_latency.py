"""Single-request latency of POST /v1/triage through HTTP on loopback.

Start the service first (`triage serve`), create an intake key, then:

    python benchmarks/http_latency.py --key KEY [--url http://127.0.0.1:8000] [--n 300]

Sends --n sequential requests (bounded; loopback only) and prints p50/p90/p99 in ms."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from urllib.parse import urlparse

BODIES = [
    {"title": "老板拖欠工资", "body": "我在电子厂上班，老板已经三个月没发工资了，请劳动监察部门帮帮我们。"},
    {"title": "咨询视同缴费年限", "body": "我1985年参加工作，在国营厂干了十年，后来企业改制，请问这十年能不能算视同缴费年限？"},
    {"title": "小区物业乱收停车费", "body": "我们小区物业公司今年起每月多收三百元停车费，业主多次反映都没人管。"},
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", required=True)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        print("refusing: this benchmark only sends traffic to loopback", file=sys.stderr)
        return 2
    timings = []
    for i in range(min(args.n, 5000)):
        data = json.dumps(BODIES[i % len(BODIES)], ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(f"{args.url}/v1/triage", data=data, method="POST",
                                         headers={"X-API-Key": args.key, "content-type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    q = statistics.quantiles(timings, n=100)
    print(f"{len(timings)} sequential requests: p50 {q[49]:.1f} ms, p90 {q[89]:.1f} ms, p99 {q[98]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
