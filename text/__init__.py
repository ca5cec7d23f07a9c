"""Text knowledge every stage shares: keywords, periods, the table text format, document records. A leaf: it imports nothing of this project but ``core``."""
