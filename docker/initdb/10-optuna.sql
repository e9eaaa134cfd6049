-- The Optuna job queue lives beside MLflow's tables, in its own database.
CREATE DATABASE optuna OWNER transfergrid;
