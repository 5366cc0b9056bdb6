"""ingest: raw documents and the labelled review sample -> corpus, task set and monitoring batches."""
