-- Run once by the postgres container on an empty volume (docker-entrypoint-initdb.d).
-- `mlflow` (POSTGRES_DB) holds MLflow's runs and registry; `optuna` the shared tuning studies
-- (tuning.storage): both use alembic_version tables, so they cannot share one database.
CREATE DATABASE optuna OWNER mlgen;
-- `service_logs`: the API's feedback store and rollout log ($MLSERVICE_FEEDBACK_DB,
-- $MLSERVICE_ROLLOUT_LOG), shared by every API container or pod.
CREATE DATABASE service_logs OWNER mlgen;
