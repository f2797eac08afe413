"""Store access (Valkey/Redis): key names (`keys`) and one module per kind of state."""
