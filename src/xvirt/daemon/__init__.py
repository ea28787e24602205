"""The host daemon: serves a host model over the control plane, the shared table and the
fast channel, and keeps its state on disk."""
