"""Settings, the pipeline that wires the stages, and the command line."""
