# Synergos MLOps tracking server. The whole state lives in the folder mounted at /mlflow:
#   docker build -t synergos_mlops:mlflow --label "synmlops_mlflow" .
#   docker run --rm -p 5500:5500 -v /path/to/mlflow/:/mlflow \
#       -e GUNICORN_CMD_ARGS="--bind=0.0.0.0" --name synmlops synergos_mlops:mlflow
FROM python:3.11-slim

WORKDIR /opt/synergos-mlops
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir .

ENV SYNMLOPS_STORE=/mlflow
ENV MLFLOW_DISABLE_TELEMETRY=true
VOLUME /mlflow
EXPOSE 5500

# tests/test_container.py runs exactly this line with the environment set above.
CMD ["synmlops", "serve"]
