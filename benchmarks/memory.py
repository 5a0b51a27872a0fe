"""Peak memory of the current process, for the benchmarks (no dependencies: the PyTorch peers
import it too)."""
import resource
import sys


def peak_rss_bytes() -> int:
    """This process's peak resident set: VmHWM on Linux. Not ru_maxrss, which Linux carries
    across fork + exec, so a benchmark's child process would report its parent's peak whenever
    that is larger (measured: a child of a 2 GB parent reports 2,075 MB, VmHWM 13.5 MB).
    ru_maxrss elsewhere (bytes on macOS, KiB on other systems)."""
    try:
        with open("/proc/self/status") as f:
            return 1024 * next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss if sys.platform == "darwin" else maxrss * 1024
