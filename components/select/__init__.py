"""select: pick the model to ship from the evaluate table, under constraints, behind a no-regression gate."""
