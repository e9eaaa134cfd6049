"""`mlflow run . -e grid` runs this module; the command itself is `transfergrid grid` (transfergrid.commands.grid)."""

from transfergrid.commands.grid import main

if __name__ == "__main__":
    main()
