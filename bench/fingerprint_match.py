"""Time to match one measurement against the bundled fingerprints (every row of
ooni/blocking-fingerprints): a 4 KB body that matches nothing, five headers, two DNS answers.

    .venv/bin/python bench/fingerprint_match.py [--runs 500]

The no-match page is the common and the worst case: every body row is tried. Target: <= 1 ms per
measurement (the daemon waits seconds on the network; a bulk OONI import feels it most).
"""

from __future__ import annotations

import argparse
import random
import timeit

from probe.analysis.fingerprints import default_fingerprints
from probe.model import HttpObservation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=500)
    args = parser.parse_args()
    fps = default_fingerprints()
    rng = random.Random(1)
    filler = "".join(rng.choice('abcdefghij klmnop<>/"=') for _ in range(4000))
    obs = HttpObservation(
        "http://news.example/",
        None,
        0.0,
        0.0,
        status=200,
        headers=(
            ("Content-Type", "text/html"),
            ("Server", "nginx"),
            ("Set-Cookie", "a=b"),
            ("Content-Length", "4096"),
            ("Date", "Mon"),
        ),
        body_sample=f"<html><head><title>News</title></head><body>{filler}</body></html>",
    )
    answers = ("93.184.216.34", "2606:2800:220:1::1")
    per = timeit.timeit(lambda: (fps.match_http(obs), fps.match_dns(answers)), number=args.runs) / args.runs
    print(f"{len(fps)} fingerprints: {per * 1e3:.3f} ms per measurement ({args.runs} runs)")


if __name__ == "__main__":
    main()
