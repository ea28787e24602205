"""The Xen-semantics host model and what serves it."""
