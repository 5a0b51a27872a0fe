"""``python -m benchmarks.peers ...``: time one peer (``benchmarks.peers.run``; ``--help``)."""
import sys

from benchmarks.peers import MISSING_TORCH, torch_available
from benchmarks.peers.options import parse_args

parse_args()   # --help and argument errors work without torch
if not torch_available():
    sys.exit(f"python -m benchmarks.peers: {MISSING_TORCH}")
from benchmarks.peers.run import main  # noqa: E402

main()
