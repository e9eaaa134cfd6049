"""`mlflow run . -e ablation` runs this module; the command itself is `transfergrid ablation` (transfergrid.commands.ablation)."""

from transfergrid.commands.ablation import main

if __name__ == "__main__":
    main()
