"""`mlflow run . -e import_results` runs this module; the command itself is `transfergrid import_results` (transfergrid.commands.import_results)."""

from transfergrid.commands.import_results import main

if __name__ == "__main__":
    main()
