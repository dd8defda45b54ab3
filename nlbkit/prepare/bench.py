"""Benchmark of `prepare`: nlbkit against nlb_tools on an mc_maze-sized generated session.

Each run is a subprocess; wall time is measured around it, peak memory is the larger of the
kernel's peak RSS of the process (`os.wait4`) and the sampled sum of RSS over its process tree
(nlb_tools smooths in a multiprocessing pool). nlb_tools runs on growing fractions of the
session until it fails, is killed above the memory cap, or passes the time limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from nlbkit import paths
from nlbkit.errors import NlbkitError
from nlbkit.nlb.datasets import get_spec

DEFAULT_SIZES = ("1/16", "1/8", "1/4", "1/2", "1")
# nlb_tools runs in its own environment from the source checkout's reference harness; a wheel install
# has neither, so both are looked for beside the package and may be given explicitly.
CHECKOUT = Path(__file__).resolve().parents[2]
REFERENCE_SCRIPT_IN_CHECKOUT = Path("tests", "reference", "make_tensors_ref.py")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    tool: str
    size: str
    wall_s: float | None
    peak_rss_mb: float | None
    status: str  # 'ok', 'failed', 'killed: memory cap', 'killed: time limit'
    detail: str = ""


def _tree_rss_bytes(root: int) -> int:
    """Sum of RSS over `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * _PAGE
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(cmd: list[str], tool: str, size: str, mem_cap_gb: float, timeout_s: float) -> Measurement:
    """Run `cmd`, watching its memory; kill the whole tree above the cap or past the time limit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    peak = [0]
    verdict = [""]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            total = _tree_rss_bytes(proc.pid)
            peak[0] = max(peak[0], total)
            over_time = time.perf_counter() - start > timeout_s
            if total > mem_cap_gb * 2**30 or over_time:
                verdict[0] = "killed: time limit" if over_time else "killed: memory cap"
                os.killpg(proc.pid, 9)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    done.set()
    watcher.join()
    peak_mb = max(peak[0], usage.ru_maxrss * 1024) / 2**20
    if verdict[0]:
        return Measurement(tool, size, None, peak_mb, verdict[0])
    if proc.returncode != 0:
        last = stderr.strip().splitlines()[-1:]
        return Measurement(tool, size, None, peak_mb, "failed", last[0] if last else "")
    return Measurement(tool, size, wall, peak_mb, "ok")


def _size_dir(work: Path, size: str) -> Path:
    return work / ("full" if Fraction(size) == 1 else f"frac_{str(Fraction(size)).replace('/', '_')}")


def generate(work: Path, sizes: list[str], seed: int) -> None:
    """The mc_maze-sized session and its fractions (fewer trials, same units), once.

    Generated in a subprocess: a child inherits its parent's peak RSS as its own starting peak
    (Linux carries it across fork and exec), so the measuring process must stay small.
    """
    spec = get_spec("mc_maze")
    for size in sizes:
        folder = _size_dir(work, size)
        if not (folder / "mc_maze" / spec.train_asset_name).exists():
            code = (
                "from nlbkit.synth.generate import write_dataset; "
                f"write_dataset('mc_maze', {str(folder)!r}, seed={seed}, scale='full', "
                f"fraction={float(Fraction(size))!r})"
            )
            subprocess.run([sys.executable, "-c", code], check=True)


def nlbkit_cmd(data_dir: Path, bin_ms: int) -> list[str]:
    code = (
        "from nlbkit.prepare.tensors import prepare; "
        f"prepare('mc_maze', {bin_ms}, {str(data_dir)!r}, progress=False)"
    )
    return [sys.executable, "-c", code]


def reference_script(path: Path | None = None) -> Path:
    """The nlb_tools tensor script: `path`, else the source checkout's reference harness."""
    script = path or Path(os.environ.get("NLBKIT_REF_SCRIPT", CHECKOUT / REFERENCE_SCRIPT_IN_CHECKOUT))
    if not script.is_file():
        raise NlbkitError(
            f"{script}: nlb_tools reference script not found; `nlbkit bench` runs from a source checkout "
            "(set NLBKIT_REF_SCRIPT to its tests/reference/make_tensors_ref.py)"
        )
    return script


def reference_cmd(ref_python: Path, data_dir: Path, bin_ms: int, out: Path) -> list[str]:
    spec = get_spec("mc_maze")
    folder = data_dir / "mc_maze"
    return [str(ref_python), str(reference_script()), str(out), "mc_maze", str(bin_ms),
            str(folder / spec.train_asset_name), str(folder / spec.test_asset_name)]


def run_prepare_benchmark(
    work: Path,
    sizes: list[str],
    bin_ms: int = 5,
    mem_cap_gb: float = 12.0,
    timeout_s: float = 1800.0,
    ref_python: Path | None = None,
    seed: int = 0,
    log=print,
) -> dict:
    """Generate, then time nlbkit on every size and nlb_tools on growing sizes until it fails."""
    sizes = sorted(sizes, key=Fraction)
    reference_script()  # before minutes of generating
    generate(work, sizes, seed)
    default_ref = CHECKOUT / ".venv-ref" / "bin" / "python"
    ref_python = ref_python or Path(os.environ.get("NLBKIT_REF_PYTHON", default_ref))
    rows: list[Measurement] = []
    for size in sizes:
        data = _size_dir(work, size)
        rows.append(measure(nlbkit_cmd(data, bin_ms), "nlbkit", size, mem_cap_gb, timeout_s))
        log(_fmt(rows[-1]))
    for size in sizes:
        data = _size_dir(work, size)
        out = data / "mc_maze" / f"nlb_tools_{bin_ms}ms.h5"
        cmd = reference_cmd(ref_python, data, bin_ms, out)
        rows.append(measure(cmd, "nlb_tools", size, mem_cap_gb, timeout_s))
        log(_fmt(rows[-1]))
        if rows[-1].status != "ok":
            break
    return summarise(rows, work, bin_ms, mem_cap_gb, timeout_s)


def summarise(rows: list[Measurement], work: Path, bin_ms: int, mem_cap_gb: float, timeout_s: float) -> dict:
    ok = {(r.tool, r.size): r for r in rows if r.status == "ok"}
    both = [r.size for r in rows if r.tool == "nlb_tools" and ("nlbkit", r.size) in ok and r.status == "ok"]
    result = {
        "bin_ms": bin_ms, "mem_cap_gb": mem_cap_gb, "timeout_s": timeout_s, "work_dir": str(work),
        "sessions": _session_sizes(work, sorted({r.size for r in rows}, key=Fraction)),
        "runs": [asdict(r) for r in rows],
    }
    result["ratios"] = {
        size: {"speedup": ok[("nlb_tools", size)].wall_s / ok[("nlbkit", size)].wall_s,
               "memory_ratio": ok[("nlb_tools", size)].peak_rss_mb / ok[("nlbkit", size)].peak_rss_mb}
        for size in both
    }
    if both:
        size = max(both, key=Fraction)
        result["largest_common_size"] = size
        result["speedup"] = result["ratios"][size]["speedup"]
        result["memory_ratio"] = result["ratios"][size]["memory_ratio"]
    return result


def _session_sizes(work: Path, sizes: list[str]) -> dict[str, dict]:
    import h5py

    spec = get_spec("mc_maze")
    out = {}
    for size in sizes:
        path = _size_dir(work, size) / "mc_maze" / spec.train_asset_name
        with h5py.File(path, "r") as f:
            out[size] = {
                "train_file_trials": int(len(f["intervals/trials/start_time"])),
                "session_s": float(f["intervals/trials/stop_time"][-1]),
                "units": int(len(f["units/id"])),
                "train_file_mb": round(path.stat().st_size / 2**20, 1),
            }
    return out


def _fmt(r: Measurement) -> str:
    wall = f"{r.wall_s:9.1f} s" if r.wall_s is not None else "        - "
    rss = f"{r.peak_rss_mb:9.0f} MB" if r.peak_rss_mb is not None else "        - "
    return f"{r.tool:9s} {r.size:>5s}  {wall}  {rss}  {r.status} {r.detail}".rstrip()


def table(result: dict) -> str:
    """Both tools side by side, one row per size, with nlb_tools' time and memory over nlbkit's."""
    runs = {(r["tool"], r["size"]): Measurement(**r) for r in result["runs"]}
    ratios = result.get("ratios", {})
    lines = [f"prepare benchmark, mc_maze-sized generated session, {result['bin_ms']} ms bins",
             f"{'size':>5s}  {'nlbkit wall':>11s} {'peak RSS':>9s}  {'nlb_tools wall':>15s} {'peak RSS':>9s}"
             f"  {'speedup':>7s} {'memory':>7s}"]
    for size in sorted({r["size"] for r in result["runs"]}, key=Fraction):
        ours, theirs = runs.get(("nlbkit", size)), runs.get(("nlb_tools", size))
        ratio = ratios.get(size)
        lines.append(
            f"{size:>5s}  {_cell(ours, 11)} {_rss(ours)}  {_cell(theirs, 15)} {_rss(theirs)}  "
            + (f"{ratio['speedup']:6.1f}x {ratio['memory_ratio']:6.1f}x" if ratio else "")
        )
    if "speedup" in result:
        lines.append(f"largest size both ran: {result['largest_common_size']} of the session: nlbkit "
                     f"{result['speedup']:.1f}x faster, {result['memory_ratio']:.1f}x less peak memory")
    return "\n".join(line.rstrip() for line in lines)


_SHORT_STATUS = {"killed: memory cap": "killed (memory)", "killed: time limit": "killed (time)"}


def _cell(m: Measurement | None, width: int) -> str:
    if m is None:
        return f"{'not run':>{width}s}"
    if m.wall_s is None:
        return f"{_SHORT_STATUS.get(m.status, m.status):>{width}s}"
    return f"{m.wall_s:>{width - 2}.1f} s"


def _rss(m: Measurement | None) -> str:
    return f"{m.peak_rss_mb:>6.0f} MB" if m is not None and m.peak_rss_mb is not None else f"{'':9s}"


def write_json(result: dict, path: Path) -> Path:
    return paths.write_json(path, result)
