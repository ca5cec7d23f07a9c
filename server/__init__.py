"""The team service: `kb serve` (``server.app``) over the pipeline and the team domain (``team``)."""
