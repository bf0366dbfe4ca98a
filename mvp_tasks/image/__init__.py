"""git, git-lfs, docker and registries, through one runner (local or over SSH). No printing, no config."""
