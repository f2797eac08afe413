"""Starling extensions for Airflow: operators, sensors, and the callables the Kafka
provider loads by dotted path."""
