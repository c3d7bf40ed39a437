"""``python -m gvd_bench`` is ``gvd bench``."""

from .cli import bench

bench(prog_name="gvd bench")
