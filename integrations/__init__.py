"""Outward adapters behind Protocols (Jira, Trello, webhooks, S3 archive); none yet."""
