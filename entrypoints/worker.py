"""`mlflow run . -e worker` runs this module; the command itself is `transfergrid worker` (transfergrid.commands.worker)."""

from transfergrid.commands.worker import main

if __name__ == "__main__":
    main()
