"""The team domain: accounts, permissions, conversations, feedback, ingest jobs, the library of collections."""
