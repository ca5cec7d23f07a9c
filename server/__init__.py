"""The team service: `kb serve` (server.app), accounts live in app.accounts."""
