"""``python -m clipsort``."""

from clipsort.cli import run

if __name__ == "__main__":
    run()
