"""`python -m tinylm ...` does what the `tinylm` command does."""
from .cli import main

if __name__ == "__main__":
    main()
