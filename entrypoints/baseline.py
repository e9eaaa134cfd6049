"""`mlflow run . -e baseline` runs this module; the command itself is `transfergrid baseline` (transfergrid.commands.baseline)."""

from transfergrid.commands.baseline import main

if __name__ == "__main__":
    main()
