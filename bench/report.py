"""Renders BENCHMARKS.json (as a dict) into BENCHMARKS.md."""

from __future__ import annotations

import json


def _s(m: dict | None, key: str = "median_s") -> str:
    if not m:
        return "—"
    st = m.get("status")
    if st == "ok" and m.get(key) is not None:
        v = m[key]
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if st == "n/a":
        return "n/a"
    if st == "not_available":
        return "not available"
    if st == "ok":
        return "—"
    return "failed"


def _mb(m: dict | None, key: str) -> str:
    if not m:
        return "—"
    if m.get("status") == "ok" and m.get(key) is not None:
        return f"{m[key]:.0f} MB"
    return _s(m)


def _x(v) -> str:
    return f"{v:.2f}x" if isinstance(v, (int, float)) else "—"


def _xc(case: dict) -> str:
    """Wall-time ratio, with the CPU-time ratio (less sensitive to other load)."""
    s = _x(case.get("ratio"))
    if isinstance(case.get("cpu_ratio"), (int, float)):
        s += f" (CPU {case['cpu_ratio']:.1f}x)"
    return s


def _met(v) -> str:
    if v is True:
        return "yes"
    if v is False:
        return "**no**"
    return "—"


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        out[prefix[:-1]] = json.dumps(d)
    else:
        out[prefix[:-1]] = d
    return out


SUBMIT_MIN_RATIO = 0.95  # issue 5: at least 0.95 of the quota, with faults injected too


def _submit_cells(case: dict) -> tuple[str, str]:
    new = case.get("new", {})
    data = new.get("result")
    if not isinstance(data, dict):
        return _s(new), "—"
    runs = data.get("runs") if isinstance(data.get("runs"), list) else []
    bits = []
    for r in runs:
        if isinstance(r, dict) and "achieved_over_quota" in r:
            bits.append(f"{r.get('run', '?')}: {r['achieved_over_quota']:.3f} of quota "
                        f"({r.get('achieved_per_minute', '?')}/min)")
    dup, lost = data.get("duplicates"), data.get("lost")
    bits.append(f"duplicates {dup}, lost {lost}")
    cell = "; ".join(bits)
    ok = None
    ratios = [r["achieved_over_quota"] for r in runs
              if isinstance(r, dict) and isinstance(r.get("achieved_over_quota"), (int, float))]
    if isinstance(dup, int) and isinstance(lost, int) and ratios:
        ok = dup == 0 and lost == 0 and min(ratios) >= SUBMIT_MIN_RATIO
    if new.get("status") != "ok":
        cell = "failed: " + cell
        ok = False
    return cell, _met(ok)


def rows(doc: dict) -> list[list[str]]:
    c = doc["cases"]
    out = []
    st = c.get("startup")
    if st:
        out.append(["1. Start-up (`--help`)", _s(st.get("new")), _s(st.get("old")),
                    _s(st.get("floor")) + " (`python -c pass`)", _xc(st),
                    st["goal"], _met(st.get("goal_met"))])
    d = c.get("dryrun")
    if d:
        out.append(["2. 10,000-job `cloud --dry_run`", _s(d.get("new")), _s(d.get("old")),
                    "—", _xc(d), d["goal"], _met(d.get("goal_met"))])
    e = c.get("expansion")
    if e:
        out.append(["3. `expansion --print_flags`, 100,000", _s(e.get("new")), _s(e.get("old")),
                    _s(e.get("floor")) + " (`cat` of the output)", _xc(e),
                    e["goal"], _met(e.get("goal_met"))])
    b = c.get("build")
    if b:
        new, old, lim = b.get("new"), b.get("old"), b.get("limit")
        adj = b.get("old_adjusted_base") or {}

        def oldcell(key, fmt):
            cell = fmt(old, key)
            if (old or {}).get("status") != "ok" and adj.get("status") == "ok":
                cell += f" (on an adjusted base: {fmt(adj, key)})"
            return cell

        out.append(["4a. Image build, first (cold)", _s(new, "first_build_s"),
                    oldcell("first_build_s", _s), _s(lim, "first_build_s") + " (hand-written)",
                    _x(_ratio(old, new, "first_build_s")),
                    "report: this ÷ hand-written = " + _x(b.get("first_build_vs_limit")), "—"])
        out.append(["4b. Rebuild after a one-file edit", _s(new, "rebuild_s"),
                    oldcell("rebuild_s", _s), _s(lim, "rebuild_s") + " (hand-written)",
                    _x(b.get("ratio")),
                    "report: this ÷ hand-written = " + _x(b.get("rebuild_vs_limit")), "—"])
        out.append(["4c. Image size", _mb(new, "image_size_mb"),
                    oldcell("image_size_mb", _mb),
                    _mb(lim, "image_size_mb") + " (hand-written)",
                    _x(_ratio(old, new, "image_size_mb")),
                    "report: this ÷ hand-written = " + _x(b.get("size_vs_limit")), "—"])
    s = c.get("submit")
    if s:
        cell, met = _submit_cells(s)
        quota = (s.get("new", {}).get("result") or {}).get("quota_per_minute")
        out.append(["5. Submission throughput (emulator)", cell, "n/a",
                    f"quota {quota}/min" if quota else "quota", "—",
                    f"≥ {SUBMIT_MIN_RATIO:.2f} of quota with and without faults; 0 duplicates, 0 lost",
                    met])
    m = c.get("memory")
    if m:
        out.append(["6. Peak RSS, 10,000-job dry run", _mb(m.get("new"), "median_rss_mb"),
                    _mb(m.get("old"), "median_rss_mb"),
                    _mb(m.get("floor"), "median_rss_mb") + " (`python -c pass`)",
                    _x(m.get("ratio")), "report (lower is better)", "—"])
    return out


def _ratio(old, new, key):
    try:
        if old.get("status") == "ok" and new.get("status") == "ok" and new[key]:
            return round(old[key] / new[key], 2)
    except (AttributeError, KeyError, TypeError):
        pass
    return None


HEADER = ["Case", "This Caliban", "Caliban 0.4.2", "Limit / floor", "0.4.2 ÷ this",
          "Goal", "Met"]


def _md_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in body:
        lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in r) + " |")
    return "\n".join(lines)


def summary_table(doc: dict) -> str:
    return _md_table(HEADER, rows(doc))


def _samples(m: dict | None) -> str:
    if not m:
        return "—"
    if m.get("status") == "ok" and "samples_s" in m:
        return (f"median {m['median_s']:.3f} s, min {m['min_s']:.3f} s, "
                f"{len(m['samples_s'])} run{'s' if len(m['samples_s']) != 1 else ''}: " + ", ".join(f"{x:.3f}" for x in m["samples_s"])
                + (f"; CPU (user+sys) median {m['median_cpu_s']:.3f} s" if "median_cpu_s" in m else "")
                + f"; peak RSS median {m['median_rss_mb']:.0f} MB")
    return f"{m.get('status')}: {m.get('error', '')}"


def _detail_block(name: str, m: dict | None) -> list[str]:
    text = _samples(m)
    if "\n" in text:
        return [f"- {name}:", "", "  ```", *["  " + ln for ln in text.splitlines()], "  ```"]
    return [f"- {name}: {text}"]


def render(doc: dict) -> str:
    m = doc["machine"]
    c = doc["cases"]
    L = ["# Benchmarks", "",
         "Generated by `make bench` (`bench/run.py`); do not edit by hand. Every number "
         "below was measured in the run described here; the raw samples are in "
         "[BENCHMARKS.json](BENCHMARKS.json).", "",
         "## Machine", "",
         f"- Date: {m['date_utc']} (commit {m.get('git_commit') or '?'})",
         f"- CPU: {m['cpu']}, {m['cores']} cores ({m['arch']})",
         f"- Memory: {m['memory_gib']} GiB",
         f"- OS: {m['os']}, kernel {m['kernel']}",
         f"- Python: this Caliban on {m.get('python_this')}, Caliban 0.4.2 on {m.get('python_0.4.2')}"
         + (f" (its build, run as an unprivileged user: {c['build']['old_user_venv']})"
            if c.get("build", {}).get("old_user_venv") else "").replace(" (reused)", ""),
         f"- Docker: engine {m['docker_engine']}, client {m['docker_client']}",
         f"- Load average at start: {', '.join(str(x) for x in m['load_avg_at_start'])} "
         "(other work on the machine adds noise; medians of fresh processes are reported)",
         f"- Whole run: {doc['total_elapsed_s']} s" + (" (BENCH_QUICK: fewer repetitions)"
                                                     if doc.get("quick") else ""),
         "", "## Results", "",
         "Times are medians of wall-clock time of fresh processes, start-up included. "
         "\"0.4.2 ÷ this\" is how many times faster (or smaller) this Caliban is; in "
         "brackets, the same ratio of CPU time (user+sys), which other work on the machine "
         "disturbs less than wall time. Goals are judged on wall time.", "",
         summary_table(doc), ""]

    L += ["## Details", ""]
    st = c.get("startup")
    if st:
        L += ["### 1. Start-up", ""]
        L += _detail_block("this Caliban (`caliban --help`)", st.get("new"))
        L += _detail_block("Caliban 0.4.2", st.get("old"))
        L += _detail_block("floor (`python -c pass`)", st.get("floor"))
        if "over_floor_s" in st:
            L.append(f"- this Caliban's own start-up cost above the bare interpreter: "
                     f"{st['over_floor_s']:.3f} s")
        L.append("")
    d = c.get("dryrun")
    if d:
        L += ["### 2. 10,000-job dry run", "",
              "Same project, same experiment config (100 learning rates x 100 seeds) and "
              "same command line for both; no credentials (private HOME, empty gcloud "
              "config, metadata server pointed at a closed port); `--image_tag` so "
              "neither tries to build or push.", "",
              f"    {d.get('command', '')}", ""]
        L += _detail_block("this Caliban", d.get("new"))
        L += _detail_block("Caliban 0.4.2", d.get("old"))
        L.append("")
    e = c.get("expansion")
    if e:
        L += ["### 3. `expansion --print_flags`", "",
              "Config: 100 learning rates x 100 seeds x 10 depths, plus a fixed string and "
              "a boolean flag (100,000 experiments, one line each). The floor is `cat` of "
              "the same output from a file.", ""]
        L += _detail_block("this Caliban", e.get("new"))
        L += _detail_block("Caliban 0.4.2", e.get("old"))
        L += _detail_block("floor (`cat`)", e.get("floor"))
        if "same_output_as_0.4.2" in e:
            L.append(f"- Output compared with 0.4.2's: {e['same_output_as_0.4.2']}")
        L.append("")
    b = c.get("build")
    if b:
        L += ["### 4. Image build of `example/`", "",
              f"Base image `{b.get('base_image')}`; module `{b.get('module', '?')}`. First "
              "build forced cold (`--no_cache` / `--no-cache`), then a rebuild with the "
              "cache after appending a comment to that module's source file. Images (and "
              "their layer cache) are removed after each builder.", ""]
        for key, name in (("new", "this Caliban"), ("old", "Caliban 0.4.2"),
                          ("old_adjusted_base", "Caliban 0.4.2 on an adjusted base"),
                          ("limit", "hand-written Dockerfile")):
            r = b.get(key)
            if not r:
                continue
            if r.get("status") == "ok":
                L.append(f"- {name}: first build {r['first_build_s']:.1f} s, rebuild "
                         f"{r['rebuild_s']:.2f} s (median of "
                         + ", ".join(f"{x:.2f}" for x in r.get("rebuild_samples_s", []))
                         + f"), image {r.get('image_size_mb')} MB"
                         + (f" ({r['adjustment']})" if r.get("adjustment") else ""))
            else:
                L += [f"- {name}: **{r.get('status')}**" +
                      (f" ({r['adjustment']})" if r.get("adjustment") else ""), "", "  ```"]
                L += ["  " + ln for ln in str(r.get("error", "")).splitlines()] + ["  ```"]
                if r.get("log"):
                    L.append(f"  Full output of that run (not committed): `{r['log']}`")
                if "externally-managed" in str(r.get("error", "")):
                    L.append("  Why: 0.4.2's Dockerfile runs `pip install` into the base "
                             "image's system Python, which Debian bookworm (PEP 668) refuses; "
                             "this Caliban installs into a virtualenv in the image.")
        if b.get("old_runs_as"):
            L.append(f"- Caliban 0.4.2 ran as user `{b['old_runs_as']}` (in the docker group).")
        if b.get("limit_dockerfile"):
            L += ["", "The hand-written Dockerfile:", "", "```dockerfile",
                  b["limit_dockerfile"].rstrip(), "```"]
        L.append("")
    s = c.get("submit")
    if s:
        L += ["### 5. Submission throughput", ""]
        new = s.get("new", {})
        if "result" in new:
            L += [f"`bench/submit_throughput.py` ({new.get('wall_s')} s, exit code "
                  f"{new.get('rc')}):", "", "```json", json.dumps(new["result"], indent=2),
                  "```"]
            if new.get("error"):
                L += ["", f"Error: {new['error']}"]
        else:
            L += [f"- this Caliban: {new.get('status')}: {new.get('error', '')}"]
        L += ["", f"- Caliban 0.4.2: {s['old']['error']}", ""]
    mm = c.get("memory")
    if mm:
        L += ["### 6. Memory", "",
              "Peak resident set size of each fresh process of the 10,000-job dry runs "
              f"above, measured with {doc.get('rss_method', '?')}.", ""]
        for key, name in (("new", "this Caliban"), ("old", "Caliban 0.4.2"),
                          ("floor", "`python -c pass`")):
            r = mm.get(key)
            if r:
                L.append(f"- {name}: " + (f"median {r['median_rss_mb']:.0f} MB"
                                          if r.get("status") == "ok" else
                                          f"{r.get('status')}: {r.get('error', '')}"))
        L.append("")
    errs = [(k, v) for k, v in c.items() if isinstance(v, dict) and v.get("error")
            and "traceback" in v]
    for k, v in errs:
        L += [f"### Harness error in case {k}", "", "```", v["traceback"], "```", ""]
    L += ["## Reproduce", "",
          "    make bench            # about 5-10 minutes with a Docker engine",
          "    BENCH_QUICK=1 .venv/bin/python bench/run.py   # fewer repetitions",
          "    BENCH_CASES=startup,dryrun .venv/bin/python bench/run.py", "",
          "Caliban 0.4.2 is installed into `bench/.work/caliban-0.4.2` on first use "
          "(dependencies pinned by `bench/constraints-caliban-0.4.2.txt`). The build case "
          "needs a Docker engine and the base image (`.ci/test-env.sh` prepares both); "
          "without them it reports \"not available\".", ""]
    return "\n".join(L)
