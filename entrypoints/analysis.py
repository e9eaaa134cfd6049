"""`mlflow run . -e analysis` runs this module; the command itself is `transfergrid analysis` (transfergrid.commands.analysis)."""

from transfergrid.commands.analysis import main

if __name__ == "__main__":
    main()
