"""Monitoring: Evidently drift reports, read back into a plain verdict; the continuous monitor.

- ``llm.text_features``: pure text features (no Evidently); ``monitoring.descriptors``: the
  NLTK-based ones (sentiment, OOV share), with data installed at setup, never downloaded;
- ``llm.drift``: the drift report and verdict, and its thresholds (``DriftParams``, the
  ``monitor`` section), shared with the DAG's monitor stage (components.monitor);
- ``monitoring.settings``: the ``monitoring`` section (window, schedule, prediction and latency
  tests, alerts, prices);
- ``monitoring.window``: exactly one time window of the server's prediction log, labels joined;
- ``monitoring.generations``: the generations of a window (POST /generate) against evaluate's
  generations.jsonl: prompt and output drift, empty and repetitive outputs, ms per token, cost;
- ``monitoring.reports``: the drift / ops / quality reports of a window; ``monitoring.cost``,
  ``monitoring.alerts``, ``monitoring.workspace`` (Evidently UI projects and dashboards);
- ``monitoring.loop``: one window end to end (``run_scheduled``), or on an interval;
  ``python -m monitoring``; ``monitoring.component``: the same call as a Kubeflow component
  (recurring run).

Importing this package imports neither Evidently nor pandas.
"""
