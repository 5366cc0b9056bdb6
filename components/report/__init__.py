"""report: one HTML page of the whole run (the DAG with each stage's status and time, the curves,
the confusion matrix, the model table, the drift verdicts, the links)."""
