-- A second database for the MLflow tracking server (Optuna uses POSTGRES_DB=optuna).
CREATE DATABASE mlflow;
