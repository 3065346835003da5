"""The scheduler: places requested instances on hosts (pure filters and weighers, atomic claims)."""
