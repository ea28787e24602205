"""The Xen-semantics host model: domains, IDs, lifecycle, images, devices, events."""
