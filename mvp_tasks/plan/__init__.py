"""Plans as data: what would change, per target, read from the world and never applied here."""
