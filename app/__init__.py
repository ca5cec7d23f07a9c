"""The pipeline that wires the stages (``app.pipeline``), its settings, results, indexing and generation turns."""
