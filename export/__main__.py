"""``python -m export`` = ``gvd export``."""

from .cli import export

if __name__ == "__main__":
    export(prog_name="python -m export")
