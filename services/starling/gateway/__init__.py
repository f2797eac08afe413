"""The gateway: clients' HTTP API (events in, timelines/notifications/trends out) and the
SSE stream that pushes trends, timeline entries and notifications live."""
