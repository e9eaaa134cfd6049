"""`mlflow run . -e prefetch` runs this module; the command itself is `transfergrid prefetch` (transfergrid.commands.prefetch)."""

from transfergrid.commands.prefetch import main

if __name__ == "__main__":
    main()
