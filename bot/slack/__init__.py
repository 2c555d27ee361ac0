"""The Slack face of compliancebot: Bolt app, listeners, Block Kit builders, delivery."""
