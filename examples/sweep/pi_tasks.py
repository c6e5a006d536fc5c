"""Task functions for the ``sweep`` example: Monte Carlo estimates of pi, one per seed.

Each call is one Python-callable task: it runs in a worker process, in its own
working directory, and returns a JSON-able value that the campaign stores.
"""

from __future__ import annotations

import json
import math
import random


def estimate_pi(seed: int, samples: int) -> dict[str, float]:
    """Estimate pi from ``samples`` random points; also write the estimate to ``estimate.json``."""
    generator = random.Random(seed)
    inside = sum(1 for _ in range(samples) if generator.random() ** 2 + generator.random() ** 2 <= 1.0)
    estimate = 4.0 * inside / samples
    result = {"seed": seed, "samples": samples, "pi": estimate, "error": abs(estimate - math.pi)}
    with open("estimate.json", "w") as handle:
        json.dump(result, handle)
    print(f"seed {seed}: pi ~ {estimate:.5f}")
    return result
