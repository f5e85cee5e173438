"""``python -m clipsort``."""

from clipsort.cli import main

if __name__ == "__main__":
    main()
