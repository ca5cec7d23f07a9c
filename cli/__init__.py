"""`kb` and `ingest`: the command line. It calls the pipeline and the team domain, never the UI or the server."""
