"""`mlflow run . -e finetune` runs this module; the command itself is `transfergrid finetune` (transfergrid.commands.finetune)."""

from transfergrid.commands.finetune import main

if __name__ == "__main__":
    main()
