"""The deploy store: history and deploy locks (leases) of every app in every cluster, in one table
the tool owns. `location` knows where that table is; `store` knows its items."""
