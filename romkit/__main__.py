"""`python -m romkit` runs the same CLI as the `romkit` console script."""

from romkit.cli.app import main

if __name__ == "__main__":
    main()
