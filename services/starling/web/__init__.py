"""What Starling's HTTP services (the gateway, the identity service) share: JSON errors,
the bound on a request's head, request metrics, health over an acknowledging producer,
the common settings and the uvicorn bootstrap with its metrics server beside it."""
