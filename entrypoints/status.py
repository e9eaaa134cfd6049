"""`mlflow run . -e status` runs this module; the command itself is `transfergrid status` (transfergrid.commands.status)."""

from transfergrid.commands.status import main

if __name__ == "__main__":
    main()
