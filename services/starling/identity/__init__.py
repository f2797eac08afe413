"""Identity: the token contract shared by the gateway (which verifies) and the built-in
identity service (which signs), and the identity service itself."""
