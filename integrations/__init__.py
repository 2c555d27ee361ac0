"""Outward adapters behind Protocols: ticket sinks (Jira so far); Trello, webhooks, S3 next."""
