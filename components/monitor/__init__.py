"""monitor: each batch of new texts against the evaluated test split -> Evidently drift reports."""
