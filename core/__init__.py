"""The types every stage shares (``core.types``) and the one error type the product raises (``core.errors``)."""
