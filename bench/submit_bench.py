"""Case 5: submission throughput against the loopback cloud emulator.

The measurement itself is bench/submit_throughput.py (written with the cloud
submission code); this wrapper runs it once in a fresh process, takes the
JSON object it prints and reports it. Caliban 0.4.2 talks only to the real AI
Platform endpoints (no way to point it at an emulator), so its column is n/a.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import benchlib as bl

SCRIPT = bl.ROOT / "bench" / "submit_throughput.py"
TIMEOUT = 300
OLD_NA = ("n/a: Caliban 0.4.2 submits only to Google's AI Platform endpoints and "
          "cannot be pointed at a local emulator; a real submission needs a project "
          "and credentials, which this benchmark must not use")


def _last_json(text: str):
    """The last top-level JSON object in the output (the script may log first)."""
    dec = json.JSONDecoder()
    found = None
    i = 0
    while True:
        j = text.find("{", i)
        if j < 0:
            break
        try:
            obj, end = dec.raw_decode(text, j)
            found = obj
            i = end
        except ValueError:
            i = j + 1
    return found


def run(tools: bl.Tools) -> dict:
    res = {"id": "submit", "title": "Submission throughput against the cloud emulator (quota-limited)",
           "goal": "achieved/quota close to 1 with and without faults; 0 duplicates, 0 lost",
           "old": {"status": "n/a", "error": OLD_NA}}
    if not SCRIPT.exists():
        res["new"] = bl.unavailable("bench/submit_throughput.py does not exist yet")
        return res
    r = bl.run_once([str(tools.new_python), str(SCRIPT)], cwd=bl.ROOT,
                    env=bl.offline_env(bl.WORK / "home-submit"), timeout=TIMEOUT)
    out = r["out"]
    data = _last_json(out)
    if r["timed_out"]:
        res["new"] = {"status": "failed", "error": f"timed out after {TIMEOUT} s"}
    elif r["rc"] != 0 and data is None:
        status = "not_available" if bl._NOT_AVAILABLE.search(out + r["err"]) else "failed"
        res["new"] = {"status": status,
                      "error": f"exit code {r['rc']}: " + bl.tail(out + "\n" + r["err"], 10)}
    elif data is None:
        res["new"] = {"status": "failed", "error": "no JSON in its output: " + bl.tail(out, 4)}
    else:
        res["new"] = {"status": "ok" if r["rc"] == 0 else "failed", "rc": r["rc"],
                      "wall_s": round(r["wall_s"], 1), "result": data}
        if r["rc"] != 0:
            res["new"]["error"] = f"exit code {r['rc']}: " + bl.tail(r["err"], 6)
    return res


if __name__ == "__main__":
    json.dump(run(bl.Tools.discover()), sys.stdout, indent=2)
