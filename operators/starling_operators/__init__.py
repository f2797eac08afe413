"""Starling extensions for Airflow: operators, sensors and callables the Kafka provider loads by dotted path."""
