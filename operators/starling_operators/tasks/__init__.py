"""What the DAGs' tasks do, as plain functions of the data interval: DAG files import these
inside task bodies only, so parsing a DAG file never loads Kafka or store clients."""
