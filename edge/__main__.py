"""The ``gvd`` command's entry point, also run by ``python -m edge``."""

from __future__ import annotations

from . import startup


def main() -> None:
    startup.pause()  # before click and the command are imported (see edge.startup)
    from .cli import main as run

    run()


if __name__ == "__main__":
    main()
