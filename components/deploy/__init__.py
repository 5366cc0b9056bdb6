"""deploy: serve the selected model over HTTP and log every prediction (the code lives in serving/)."""
