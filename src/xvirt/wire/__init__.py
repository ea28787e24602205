"""What the daemon and its clients both speak: S-expressions, xend records, the shared
table's layout, the fast channel's framing, and one codec each for events and rows."""
