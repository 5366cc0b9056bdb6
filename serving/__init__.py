"""The model server of the deploy stage's release: FastAPI app, micro-batching, the Parquet prediction log.

``llm.served`` loads a classifier folder; ``serving.app.create_app`` builds the HTTP app;
``serving.prediction_log`` writes every prediction and late label as date-partitioned Parquet;
``serving.settings`` is the ``serving`` section of params.yaml; ``python -m serving`` runs it.
Importing this package imports neither torch nor FastAPI.
"""
