"""`mlflow run . -e main` runs this module; the command itself is `transfergrid main` (transfergrid.commands.main)."""

from transfergrid.commands.main import main

if __name__ == "__main__":
    main()
