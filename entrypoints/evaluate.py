"""`mlflow run . -e evaluate` runs this module; the command itself is `transfergrid evaluate` (transfergrid.commands.evaluate)."""

from transfergrid.commands.evaluate import main

if __name__ == "__main__":
    main()
