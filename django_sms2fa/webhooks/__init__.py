"""Delivery-report webhooks: providers tell us what became of a message."""
