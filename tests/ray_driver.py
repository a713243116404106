"""A Ray driver in its own process, for tests/test_ray.py (which kills it): run a sweep of sweep_jobs.square
jobs (or spec["fn"]) on the cluster at ADDRESS and store it in STORE.

    python ray_driver.py STORE ADDRESS '{"xs": [...], "extra": {...}, "fn": "square"}'
"""

import json
import sys

import sweep_jobs

from gapbench.config import Runtime
from gapbench.sweep import run_sweep

if __name__ == "__main__":
    store, address, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    result = run_sweep(sweep_jobs.jobs(spec.get("fn", "square"), spec["xs"], **spec["extra"]), store, progress=False,
                       runtime=Runtime(backend="ray", ray_address=address))
    print(json.dumps({"trained": len(result.trained), "reused": len(result.reused), "failed": len(result.failed)}))
