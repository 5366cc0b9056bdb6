# The project image every Kubeflow component runs in (CPU). It installs through the same script
# the Makefile uses (scripts/setup.sh), so what the tests exercise is what the image contains.
#   make image   (where a Docker engine exists)  ->  llm-production-line:0.1.0
FROM python:3.11-slim-bookworm

RUN apt-get update && apt-get install -y --no-install-recommends git make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements/ requirements/
COPY scripts/ scripts/
COPY pyproject.toml README.md ./
COPY components/ components/
COPY monitoring/ monitoring/
COPY pipelines/ pipelines/
RUN scripts/setup.sh /opt/venv && rm -rf /root/.cache/pip
ENV PATH=/opt/venv/bin:$PATH \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    TOKENIZERS_PARALLELISM=false \
    PYTHONDONTWRITEBYTECODE=1
