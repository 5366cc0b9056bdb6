# The project image every Kubeflow component runs in (CPU). It installs through the same scripts
# the Makefile uses (scripts/setup.sh, scripts/fetch_nltk_data.py), so what the tests exercise is
# what the image contains.   make image   ->  llm-production-line:0.1.0
FROM python:3.11-slim-bookworm

RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements/ requirements/
COPY scripts/ scripts/
COPY pyproject.toml README.md ./
COPY components/ components/
COPY llm/ llm/
COPY monitoring/ monitoring/
COPY pipelines/ pipelines/
COPY serving/ serving/
RUN scripts/setup.sh /opt/venv && /opt/venv/bin/python scripts/fetch_nltk_data.py && rm -rf /root/.cache/pip
# The server's settings (params.yaml's serving section): the KServe InferenceService runs
# `python -m serving --params params.yaml` here. Copied after the install, so a params change
# does not rebuild the venv layer.
COPY params.yaml ./
ENV PATH=/opt/venv/bin:$PATH \
    NLTK_DATA=/app/.cache/nltk_data \
    DO_NOT_TRACK=1 \
    DVC_NO_ANALYTICS=1 \
    TOKENIZERS_PARALLELISM=false \
    PYTHONDONTWRITEBYTECODE=1
