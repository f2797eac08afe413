"""Real components for tests and local development: Kafka brokers and Redis.

Import from the submodules (`starling.harness.kafka`, `starling.harness.redis`,
`starling.harness.kafka_dist`); this package stays empty so that the `starling dev`
CLI can be registered without loading confluent-kafka or cryptography.
"""
