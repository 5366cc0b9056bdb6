"""clean: an Apache Beam curation pipeline: repair, quality rules, language, outliers, PII, dedup, decontamination."""
